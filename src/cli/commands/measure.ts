// qimg measure [--output=human|json] [--object secret,...] [-O FMT] [-o OPTIONS] (--size SIZE | [-f FMT] [-l SNAPSHOT] IMG)
// A LUKS target (-o encrypt.format=luks,encrypt.key-secret=ID) counts its header, as qemu-img does.
import { measureQcow2, measureRaw } from '../../commands/measure.js'
import { ImageError } from '../../errors.js'
import { findFormatModule } from '../../formats.js'
import { stringOption } from '../getopt.js'
import { parseBool, parseCreateOptions, parseOptionNumber, parseOptionSize } from '../create-options.js'
import { measureLuksHeader } from '../encrypt-options.js'
import { secretsOf } from '../secrets.js'
import { toQemuJson } from '../qjson.js'
import { parseImageSize } from './create.js'
import { openOperand, outputFormat, parseArgs, type Command } from '../context.js'
import { optionListCheck, snapshotParam, snapshotParamCheck } from '../option-checks.js'

/** The largest L1 table QEMU accepts (QCOW_MAX_L1_SIZE). */
const MAX_L1_BYTES = 32 * 1024 * 1024

/** qcow2_measure's reading of the -o options, with its own checks and messages. */
function qcow2Target(opts: Map<string, string>) {
  const bad = (message: string) => new ImageError('INVALID_ARGUMENT', message)
  const extendedL2 = opts.has('extended_l2') && parseBool('extended_l2', opts.get('extended_l2')!)
  const clusterSize = opts.has('cluster_size') ? parseOptionSize('cluster_size', opts.get('cluster_size')!) : 65536
  const clusterBits = Math.log2(clusterSize)
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw bad('Cluster size must be a power of two between 512 and 2048k')
  if (extendedL2 && clusterSize < 16384) throw bad('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes')
  const compat = opts.get('compat')
  if (compat !== undefined && compat !== '0.10' && compat !== '1.1') throw bad(`Invalid compatibility level: '${compat}'`)
  const version = compat === '0.10' ? 2 : 3
  const refcountBits = opts.has('refcount_bits') ? parseOptionNumber('refcount_bits', opts.get('refcount_bits')!) : 16
  if (!Number.isInteger(Math.log2(refcountBits)) || refcountBits > 64) throw bad('Refcount width must be a power of two and may not exceed 64 bits')
  if (version < 3 && refcountBits !== 16) throw bad('Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)')
  const preallocation = opts.get('preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(preallocation)) throw bad(`invalid parameter value: ${preallocation}`)
  return {
    clusterSize, refcountBits, extendedL2, version,
    preallocation: preallocation as 'off' | 'metadata' | 'falloc' | 'full',
    hasBackingFile: opts.has('backing_file'),
  }
}

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
    if (format !== 'raw' && format !== 'qcow2' && !findFormatModule(format)) throw new ImageError('UNSUPPORTED', `Unknown file format '${format}'`)
    const optionTexts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
    let opts: Map<string, string>
    try {
      opts = parseCreateOptions(format, optionTexts)
    } catch (e) {
      if (!(e instanceof ImageError) || e.code !== 'INVALID_ARGUMENT') throw e
      throw new ImageError(e.code, `${e.message}\nqimg: Invalid options for file format '${format}'`, { cause: e })
    }
    // Formats qimg has but cannot measure are those QEMU cannot measure either (vdi has no bdrv_measure).
    if (format !== 'raw' && format !== 'qcow2') throw new ImageError('UNSUPPORTED', `Block driver '${format}' does not support size measurement`)
    const source = device ? { device } : { size: size! }
    let result
    if (format === 'raw') {
      result = measureRaw(source)
    } else {
      const target = { ...qcow2Target(opts), luksHeaderLength: measureLuksHeader(opts, secrets) }
      if (!device) {
        // The L1 table must be able to address the size.
        const cs = target.clusterSize
        const l2Tables = Math.ceil(Math.ceil(size! / cs) / (cs / (target.extendedL2 ? 16 : 8)))
        if (l2Tables * 8 > MAX_L1_BYTES) throw new ImageError('INVALID_ARGUMENT', 'The image size is too large (try using a larger cluster size)')
      }
      result = await measureQcow2(target, source)
    }
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
