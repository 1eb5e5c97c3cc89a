// qimg measure [--output=human|json] [--object secret,...] [-O FMT] [-o OPTIONS] (--size SIZE | [-f FMT] [-l SNAPSHOT] IMG)
// The figures come from the target format's module (its measure); formats QEMU cannot measure say so.
import { ImageError } from '../../errors.js'
import { findFormatModule } from '../../formats.js'
import { stringOption } from '../getopt.js'
import { parseCreateOptions } from '../create-options.js'
import { lookupSecretUtf8, secretsOf } from '../secrets.js'
import { toQemuJson } from '../qjson.js'
import { parseImageSize } from './create.js'
import { openOperand, outputFormat, parseArgs, type Command } from '../context.js'
import { optionListCheck, snapshotParam, snapshotParamCheck } from '../option-checks.js'

/** A size as QEMU prints its uint64: every digit (sizes above 2^53 are exact powers-of-two multiples). */
const exact = (n: number): bigint => BigInt(n)

const snapshotOf = (text: string | undefined) => text === undefined ? undefined : snapshotParam(text)

export const measure: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'output', value: true },
    { short: 'O', value: true, key: 'target-format' },
    { short: 'o', value: true, key: 'options', ...optionListCheck },
    { long: 'size', value: true },
    { short: 'l', value: true, key: 'snapshot', ...snapshotParamCheck },
  ])
  const secrets = await secretsOf(parsed) // qemu-img creates the --object secrets first
  const output = outputFormat(parsed)
  const format = stringOption(parsed, 'target-format') ?? 'raw'
  const sizeText = stringOption(parsed, 'size')
  const size = sizeText === undefined ? undefined : parseImageSize(sizeText)
  const [filename, extra] = parsed.operands
  if (extra !== undefined) throw new ImageError('INVALID_ARGUMENT', 'At most one filename argument is allowed.')
  if (filename === undefined && ['image-opts', 'format', 'snapshot'].some((key) => parsed.options.has(key))) {
    throw new ImageError('INVALID_ARGUMENT', '--image-opts, -f, and -l require a filename argument.')
  }
  if (size !== undefined && filename !== undefined) throw new ImageError('INVALID_ARGUMENT', '--size N cannot be used together with a filename.')
  if (size === undefined && filename === undefined) throw new ImageError('INVALID_ARGUMENT', 'Either --size N or one filename must be specified.')
  // As qemu-img: the source opens first, then the target's options are read.
  const device = filename === undefined ? undefined : await openOperand(filename, parsed, { snapshot: snapshotOf(stringOption(parsed, 'snapshot')) })
  try {
    const module = findFormatModule(format)
    if (!module) throw new ImageError('UNSUPPORTED', `Unknown file format '${format}'`)
    const optionTexts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
    let opts: Map<string, string>
    try {
      opts = parseCreateOptions(format, optionTexts)
    } catch (e) {
      if (!(e instanceof ImageError) || e.code !== 'INVALID_ARGUMENT') throw e
      throw new ImageError(e.code, `${e.message}\nqimg: Invalid options for file format '${format}'`, { cause: e })
    }
    // Formats without a measure are those QEMU cannot measure either (vdi has no bdrv_measure).
    if (!module.measure) throw new ImageError('UNSUPPORTED', `Block driver '${format}' does not support size measurement`)
    const result = await module.measure({ options: opts, source: device ? { device } : { size: size! }, lookupSecret: (id) => lookupSecretUtf8(secrets, id) })
    if (output === 'json') {
      ctx.out(toQemuJson({ bitmaps: result.bitmaps, required: exact(result.required), 'fully-allocated': exact(result.fullyAllocated) }) + '\n')
    } else {
      ctx.out(`required size: ${exact(result.required)}\nfully allocated size: ${exact(result.fullyAllocated)}\n`)
      if (result.bitmaps !== undefined) ctx.out(`bitmaps size: ${result.bitmaps}\n`)
    }
  } finally {
    await device?.close()
  }
  return 0
}
