// qimg create [-f FMT] [-o OPTIONS] [-b BACKING [-F FMT]] [-u] [-q] IMG [SIZE]
import { ImageError, isImageError } from '../../errors.js'
import { pathCombine } from '../../format/chain.js'
import { createWithModule } from '../../node/create.js'
import { findFormatModule, formatModules } from '../../formats.js'
import { openImage } from '../../node/open.js'
import { resolve } from 'node:path'
import { flag, stringOption, type Parsed } from '../getopt.js'
import { formattingLine, hasHelpOption, optionHelp, parseCreateOptions, parseOptionSize } from '../create-options.js'
import { cvtnum } from '../size.js'
import { parseArgs, type CliContext, type Command } from '../context.js'
import { lookupSecret, secretsOf } from '../secrets.js'
import { optionListCheck } from '../option-checks.js'

/** The size operand as qemu-img's cvtnum("image size", …) reads it, with its messages. */
export function parseImageSize(text: string): number {
  return cvtnum('image size', text)
}

export const create: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'o', value: true, key: 'options', ...optionListCheck },
    { short: 'b', long: 'backing', value: true, key: 'backing' },
    { short: 'F', long: 'backing-format', value: true, key: 'backing-format' },
    { short: 'B', value: true, key: 'backing-format-new' },
    { short: 'u', value: false, key: 'unsafe' },
  ])
  const format = stringOption(parsed, 'format') ?? 'raw'
  const optionTexts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
  const [filename, sizeText, extra] = parsed.operands
  if (optionTexts.some(hasHelpOption)) {
    ctx.out(optionHelp(format, filename))
    return 0
  }
  const tryHelp = "\nTry 'qimg --help' for more information"
  if (filename === undefined) throw new ImageError('INVALID_ARGUMENT', 'Expecting image file name' + tryHelp)
  const size = sizeText !== undefined ? parseImageSize(sizeText) : undefined
  if (extra !== undefined) throw new ImageError('INVALID_ARGUMENT', `Unexpected argument: ${extra}` + tryHelp)
  // Like bdrv_img_create's errors, every later one names the image.
  try {
    await createImage(filename, format, optionTexts, size, parsed, ctx)
  } catch (e) {
    if (isImageError(e)) {
      const qemuText = e.qemuText === undefined ? {} : { qemuText: `${filename}: ${e.qemuText}` }
      throw new ImageError(e.code, `${filename}: ${e.message}`, { cause: e, file: filename, ...qemuText })
    }
    throw e
  }
  return 0
}

/** bdrv_img_create: options, backing file (opened to check it, and for the size), then the image. */
async function createImage(filename: string, format: string, optionTexts: string[], sizeArgument: number | undefined, parsed: Parsed, ctx: CliContext): Promise<void> {
  const module = findFormatModule(format)
  if (!module?.create) throw new ImageError('UNSUPPORTED', `Unknown file format '${format}' (qimg creates ${formatModules.filter((m) => m.create).map((m) => m.name).join(', ')})`)
  const takesBacking = module.createOptions?.some((o) => o.name === 'backing_file') ?? false
  const opts = parseCreateOptions(format, optionTexts)
  const secrets = await secretsOf(parsed) // --object is checked before anything is created
  let size = sizeArgument
  if (opts.has('size')) {
    if (size !== undefined) throw new ImageError('INVALID_ARGUMENT', 'The image size must be specified only once')
    size = parseOptionSize('size', opts.get('size')!)
  }
  const backingArgument = stringOption(parsed, 'backing')
  if (backingArgument !== undefined) {
    if (!takesBacking) throw new ImageError('INVALID_ARGUMENT', `Backing file not supported for file format '${format}'`)
    opts.set('backing_file', backingArgument)
  }
  const formatArgument = stringOption(parsed, 'backing-format') ?? stringOption(parsed, 'backing-format-new')
  if (formatArgument !== undefined) {
    if (!takesBacking) throw new ImageError('INVALID_ARGUMENT', `Backing file format not supported for file format '${format}'`)
    opts.set('backing_fmt', formatArgument)
  }
  const backing = opts.get('backing_file')
  const backingFormat = opts.get('backing_fmt')
  if (backing !== undefined) {
    const full = pathCombine(filename, backing)
    // QEMU compares the names as given; qimg also refuses another name for the same file,
    // which QEMU would turn into an image that is its own backing file.
    if (resolve(full) === resolve(filename)) throw new ImageError('INVALID_ARGUMENT', 'Error: Trying to create an image with the same filename as the backing file')
    if (backing === '') throw new ImageError('INVALID_ARGUMENT', 'Expected backing file name, got empty string')
    if (!flag(parsed, 'unsafe')) {
      // The backing chain must open (this also refuses loops) before anything is written.
      // bdrv_img_create opens the chain with BDRV_O_NO_IO: an encrypted backing file needs no secret.
      const base = await openImage(full, { format: backingFormat, metadataOnly: true }).catch((e: Error) => {
        throw new ImageError('INVALID_ARGUMENT', `${e.message}\nCould not open backing image.`)
      })
      const detected = base.driver.format
      size ??= base.size
      await base.close()
      if (backingFormat === undefined) throw new ImageError('INVALID_ARGUMENT', `Backing file specified without backing format\nDetected format of ${detected}.`)
    } else if (backingFormat === undefined) {
      throw new ImageError('INVALID_ARGUMENT', 'Backing file specified without backing format')
    }
  }
  if (size === undefined) throw new ImageError('INVALID_ARGUMENT', 'Image creation needs a size parameter')
  if (!flag(parsed, 'quiet')) ctx.out(formattingLine(filename, format, opts, size) + '\n')
  await createWithModule(filename, module, size, opts, (id) => lookupSecret(secrets, id))
}
