// qimg bench [-w] [-c COUNT] [-d DEPTH] [-o OFFSET] [-s SIZE] [-S STEP] [-f FMT] [-q] IMG —
// qemu-img bench: COUNT requests of SIZE bytes, DEPTH in flight, offsets stepping by STEP.
import { ImageError } from '../../errors.js'
import { flag, stringOption } from '../getopt.js'
import { parseOptionNumber } from '../create-options.js'
import { cvtnum, MAX_SIZE } from '../size.js'
import { oneOperand, openOperand, parseArgs, type Command } from '../context.js'
import { cliProgress, PROGRESS_SPEC } from '../progress-option.js'

export const bench: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'w', value: false, key: 'write' },
    { short: 'c', value: true, key: 'count' },
    { short: 'd', value: true, key: 'depth' },
    { short: 'o', value: true, key: 'offset' },
    { short: 's', value: true, key: 'size' },
    { short: 'S', value: true, key: 'step' },
    { short: 't', value: true, key: 'cache' },
    { short: 'i', value: true, key: 'aio' },
    { short: 'n', value: false, key: 'native' },
    { long: 'pattern', value: true },
    { long: 'flush-interval', value: true },
    { long: 'no-drain', value: false },
    PROGRESS_SPEC,
  ])
  const filename = oneOperand(parsed)
  /** qemu_strtoul (decimal, 0x hexadecimal, 0 octal) up to `max`, else qemu-img's message. */
  const integer = (key: string, fallback: number, what: string, max = 2 ** 31 - 1): number => {
    const text = stringOption(parsed, key)
    if (text === undefined) return fallback
    let value: number
    try {
      value = parseOptionNumber(key, text)
    } catch {
      value = Number.NaN
    }
    if (!(value <= max)) throw new ImageError('INVALID_ARGUMENT', `Invalid ${what} specified`)
    return value
  }
  /** cvtnum_full: a size, with qemu-img's messages. */
  const size = (key: string, fallback: number, what: string, max?: number): number => {
    const text = stringOption(parsed, key)
    return text === undefined ? fallback : cvtnum(what, text, 0n, max === undefined ? MAX_SIZE : BigInt(max))
  }
  const count = integer('count', 75000, 'request count')
  const depth = integer('depth', 64, 'queue depth')
  const offset = size('offset', 0, 'offset')
  const bufferSize = size('size', 4096, 'buffer size', 2 ** 31 - 1)
  // -S 0 means the buffer size, as no -S does.
  const step = size('step', 0, 'step_size', 2 ** 31 - 1) || bufferSize
  const write = flag(parsed, 'write')
  const patternByte = integer('pattern', 0, 'pattern byte', 0xff)
  const flushInterval = integer('flush-interval', 0, 'flush interval')
  // (qemu-img 7.2 accepts a depth of 0 and then waits forever; qimg refuses it.)
  if (depth < 1) throw new ImageError('INVALID_ARGUMENT', 'Invalid queue depth specified')
  if (flushInterval && !write) throw new ImageError('INVALID_ARGUMENT', '--flush-interval is only available in write tests')
  if (flushInterval && flushInterval < depth) throw new ImageError('INVALID_ARGUMENT', 'Flush interval can\'t be smaller than depth')
  const cache = stringOption(parsed, 'cache')
  if ((flag(parsed, 'native') || stringOption(parsed, 'aio') === 'native') && cache !== 'none' && cache !== 'directsync') {
    throw new ImageError('INVALID_ARGUMENT', `Could not open '${filename}': aio=native was specified, but it requires cache.direct=on, which was not specified.`)
  }
  const device = await openOperand(filename, parsed, { writable: write })
  // qemu-img bench has no -p: --progress=json and SIGUSR1 are qimg's; one phase, the bytes of
  // the requests completed.
  const progress = cliProgress(parsed, ctx, { bar: false })
  try {
    if (!flag(parsed, 'quiet')) {
      ctx.out(`Sending ${count} ${write ? 'write' : 'read'} requests, ${bufferSize} bytes each, ${depth} in parallel (starting at offset ${offset}, step size ${step})\n`)
      if (flushInterval) ctx.out(`Sending flush every ${flushInterval} requests\n`)
    }
    const buffer = new Uint8Array(bufferSize).fill(patternByte)
    const started = performance.now()
    progress.meter.phase(write ? 'write' : 'read', count * bufferSize)
    let issued = 0
    let position = offset
    const nextOffset = (): number => {
      const at = position
      // qemu-img 7.2 wraps the offset at the image size (a request may then cross the end
      // and fail, as it does there).
      position = (position + step) % device.size
      return at
    }
    const worker = async (): Promise<void> => {
      while (issued < count) {
        issued++
        const at = nextOffset()
        if (at + bufferSize > device.size) throw new ImageError('IO', 'Failed request: Input/output error')
        if (write) {
          await device.write(at, buffer)
          if (flushInterval && issued % flushInterval === 0) await device.flush()
        } else {
          await device.read(at, bufferSize)
        }
        progress.meter.add(bufferSize)
      }
    }
    await Promise.all(Array.from({ length: Math.min(depth, count) }, worker))
    if (write) await device.flush()
    progress.meter.end()
    const seconds = (performance.now() - started) / 1000
    if (!flag(parsed, 'quiet')) ctx.out(`Run completed in ${seconds.toFixed(3)} seconds.\n`)
  } finally {
    progress.dispose()
    await device.close()
  }
  return 0
}
