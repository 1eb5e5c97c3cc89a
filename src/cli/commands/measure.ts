// qimg measure [--output=human|json] [-O FMT] [-o OPTIONS] (--size SIZE | [-f FMT] [-l SNAPSHOT] IMG)
import { measureQcow2, measureRaw } from '../../commands/measure.js'
import { ImageError } from '../../errors.js'
import { stringOption } from '../getopt.js'
import { parseCreateOptions, toQcow2Options } from '../create-options.js'
import { toQemuJson } from '../qjson.js'
import { parseImageSize } from './create.js'
import { openOperand, outputFormat, parseArgs, type Command } from '../context.js'

export const measure: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'output', value: true },
    { short: 'O', value: true, key: 'target-format' },
    { short: 'o', value: true, key: 'options' },
    { long: 'size', value: true },
    { short: 'l', value: true, key: 'snapshot' },
  ])
  const output = outputFormat(parsed)
  const format = stringOption(parsed, 'target-format') ?? 'raw'
  const sizeText = stringOption(parsed, 'size')
  const filename = parsed.operands[0]
  if (sizeText !== undefined && filename !== undefined) throw new ImageError('INVALID_ARGUMENT', '--size N cannot be used together with a filename.')
  if (sizeText === undefined && filename === undefined) throw new ImageError('INVALID_ARGUMENT', 'Either --size N or one filename must be specified.')
  const optionTexts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
  const opts = parseCreateOptions(format, optionTexts)
  const device = filename === undefined ? undefined : await openOperand(filename, parsed, { snapshot: stringOption(parsed, 'snapshot') })
  try {
    const source = device ? { device } : { size: parseImageSize(sizeText!) }
    let result
    if (format === 'raw') {
      result = measureRaw(source)
    } else {
      const o = toQcow2Options(opts, 0)
      const refcountBits = o.refcountBits ?? 16
      if (!Number.isInteger(Math.log2(refcountBits)) || refcountBits > 64) throw new ImageError('INVALID_ARGUMENT', 'Refcount width must be a power of two and may not exceed 64 bits')
      result = await measureQcow2({
        clusterSize: o.clusterSize ?? 65536, refcountBits, extendedL2: o.extendedL2 ?? false,
        preallocation: o.preallocation ?? 'off', hasBackingFile: o.backingFile !== undefined,
        version: o.compat === '0.10' ? 2 : 3,
      }, source)
    }
    if (output === 'json') {
      ctx.out(toQemuJson({ bitmaps: result.bitmaps, required: result.required, 'fully-allocated': result.fullyAllocated }) + '\n')
    } else {
      ctx.out(`required size: ${result.required}\nfully allocated size: ${result.fullyAllocated}\n`)
      if (result.bitmaps !== undefined) ctx.out(`bitmaps size: ${result.bitmaps}\n`)
    }
  } finally {
    await device?.close()
  }
  return 0
}
