// qimg convert [-f FMT] -O raw [-l SNAPSHOT] [-S SIZE] [-p] [-t CACHE] [-m N] IN OUT
import { convertToRaw } from '../../commands/convert.js'
import { ImageError } from '../../errors.js'
import { FileStorage } from '../../io/file.js'
import { flag, stringOption } from '../getopt.js'
import { parseOptionString } from '../image-opts.js'
import { parseSize } from '../size.js'
import { openOperand, parseArgs, type Command } from '../context.js'

/** qemu-img's -l: "snapshot.id=ID,snapshot.name=NAME" or a bare ID or name. */
function snapshotOption(text: string | undefined): string | { id?: string; name?: string } | undefined {
  if (text === undefined) return undefined
  if (!text.startsWith('snapshot.')) return text
  const opts = parseOptionString(text)
  const id = opts.get('snapshot.id')
  const name = opts.get('snapshot.name')
  return { ...(id === undefined ? {} : { id }), ...(name === undefined ? {} : { name }) }
}

export const convert: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'O', value: true, key: 'target-format' },
    { short: 'o', value: true, key: 'options' },
    { short: 'l', value: true, key: 'snapshot' },
    { short: 's', value: true, key: 'snapshot-old' },
    { short: 'S', value: true, key: 'sparse' },
    { short: 'p', value: false, key: 'progress' },
    { short: 't', value: true, key: 'cache' },
    { short: 'T', value: true, key: 'source-cache' },
    { short: 'm', value: true, key: 'parallel' },
    { short: 'W', value: false, key: 'out-of-order' },
    { short: 'n', value: false, key: 'no-create' },
  ])
  const targetFormat = stringOption(parsed, 'target-format') ?? 'raw'
  if (targetFormat !== 'raw') throw new ImageError('UNSUPPORTED', `convert -O ${targetFormat}: only raw output is supported so far`)
  if (parsed.options.has('options')) throw new ImageError('INVALID_ARGUMENT', `Invalid option list for raw output: ${stringOption(parsed, 'options')}`)
  if (parsed.operands.length < 2) throw new ImageError('INVALID_ARGUMENT', 'Expecting image file name and output file name')
  if (parsed.operands.length > 2) throw new ImageError('UNSUPPORTED', 'convert: concatenating several sources is not supported yet')
  const [source, output] = parsed.operands as [string, string]
  const sparseText = stringOption(parsed, 'sparse')
  const sparseSize = sparseText === undefined ? 4096 : parseSize(sparseText)
  if (sparseSize % 512 !== 0 || sparseSize > 16 * 1024 * 1024) {
    throw new ImageError('INVALID_ARGUMENT', `Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16MiB`)
  }
  const parallelText = stringOption(parsed, 'parallel')
  const parallel = parallelText === undefined ? 8 : Number(parallelText)
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) throw new ImageError('INVALID_ARGUMENT', 'Invalid number of coroutines. Allowed number of coroutines is between 1 and 16')
  const cache = stringOption(parsed, 'cache') ?? 'unsafe'
  const device = await openOperand(source, parsed, { snapshot: snapshotOption(stringOption(parsed, 'snapshot') ?? stringOption(parsed, 'snapshot-old')) })
  try {
    const noCreate = flag(parsed, 'no-create')
    const target = noCreate ? await FileStorage.open(output, { writable: true }) : await FileStorage.create(output)
    try {
      if (noCreate) {
        if ((await target.size()) < device.size) throw new ImageError('INVALID_ARGUMENT', `${output}: target is smaller than the source (${device.size} bytes)`)
      } else {
        await target.truncate(device.size)
      }
      await convertToRaw(device, target, {
        sparseSize, parallel, targetIsZero: !noCreate,
        progress: flag(parsed, 'progress') && !flag(parsed, 'quiet') ? (t) => ctx.out(t) : undefined,
      })
      if (cache !== 'unsafe') await target.flush()
    } finally {
      await target.close()
    }
  } finally {
    await device.close()
  }
  return 0
}
