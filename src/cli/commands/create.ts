// qimg create [-f FMT] [-o OPTIONS] [-b BACKING [-F FMT]] [-u] [-q] IMG [SIZE]
import { ImageError } from '../../errors.js'
import { pathCombine } from '../../format/chain.js'
import { createQcow2, createRaw } from '../../node/create.js'
import { openImage } from '../../node/open.js'
import { resolve } from 'node:path'
import { flag, stringOption } from '../getopt.js'
import { OPTION_HELP, formattingLine, parseCreateOptions, toQcow2Options } from '../create-options.js'
import { parseSize } from '../size.js'
import { parseArgs, type Command } from '../context.js'

/** qemu-img's message for a size it cannot parse. */
export function parseImageSize(text: string): number {
  try {
    if (text.trim().startsWith('-')) throw new Error('negative')
    return parseSize(text)
  } catch {
    throw new ImageError('INVALID_ARGUMENT', 'Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nqimg: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.')
  }
}

export const create: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'o', value: true, key: 'options' },
    { short: 'b', long: 'backing', value: true, key: 'backing' },
    { short: 'F', long: 'backing-format', value: true, key: 'backing-format' },
    { short: 'B', value: true, key: 'backing-format-new' },
    { short: 'u', value: false, key: 'unsafe' },
  ])
  const format = stringOption(parsed, 'format') ?? 'raw'
  const optionTexts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
  if (optionTexts.some((t) => t === 'help' || t === '?')) {
    const help = OPTION_HELP[format]
    if (!help) throw new ImageError('INVALID_ARGUMENT', `Unknown file format '${format}'`)
    ctx.out(help + '\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n')
    return 0
  }
  if (format !== 'qcow2' && format !== 'raw') throw new ImageError('UNSUPPORTED', `Unknown file format '${format}' (qimg creates qcow2 and raw)`)
  const [filename, sizeText, extra] = parsed.operands
  if (filename === undefined) throw new ImageError('INVALID_ARGUMENT', 'Expecting image file name')
  if (extra !== undefined) throw new ImageError('INVALID_ARGUMENT', `Unexpected argument: ${extra}`)
  const opts = parseCreateOptions(format, optionTexts)
  const backing = stringOption(parsed, 'backing') ?? opts.get('backing_file')
  const backingFormat = stringOption(parsed, 'backing-format') ?? stringOption(parsed, 'backing-format-new') ?? opts.get('backing_fmt')
  if (backing !== undefined) {
    if (format !== 'qcow2') throw new ImageError('INVALID_ARGUMENT', `${filename}: Backing file not supported for file format '${format}'`)
    opts.set('backing_file', backing)
    if (backingFormat === undefined) throw new ImageError('INVALID_ARGUMENT', `${filename}: Backing file specified without backing format`)
    opts.set('backing_fmt', backingFormat)
  }
  let size = sizeText !== undefined ? parseImageSize(sizeText) : opts.has('size') ? parseImageSize(opts.get('size')!) : undefined
  if (backing !== undefined) {
    const full = pathCombine(filename, backing)
    if (resolve(full) === resolve(filename)) throw new ImageError('INVALID_ARGUMENT', `${filename}: Error: Trying to create an image with the same filename as the backing file`)
    if (!flag(parsed, 'unsafe')) {
      // The backing chain must open (this also refuses loops) before anything is written.
      const base = await openImage(full, { format: backingFormat }).catch((e: Error) => {
        throw new ImageError('INVALID_ARGUMENT', `${filename}: ${e.message}\nCould not open backing image.`)
      })
      size ??= base.size
      await base.close()
    }
  }
  if (size === undefined) throw new ImageError('INVALID_ARGUMENT', `${filename}: Image creation needs a size parameter`)
  if (!flag(parsed, 'quiet')) ctx.out(formattingLine(filename, format, opts, size) + '\n')
  if (format === 'raw') {
    const prealloc = opts.get('preallocation') ?? 'off'
    if (prealloc !== 'off' && prealloc !== 'falloc' && prealloc !== 'full') throw new ImageError('INVALID_ARGUMENT', `${filename}: Invalid parameter '${prealloc}'`)
    await createRaw(filename, size, prealloc)
  } else {
    // QEMU rounds qcow2 sizes up to whole sectors.
    await createQcow2(filename, toQcow2Options(opts, Math.ceil(size / 512) * 512))
  }
  return 0
}
