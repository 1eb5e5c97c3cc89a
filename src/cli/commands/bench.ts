// qimg bench [-w] [-c COUNT] [-d DEPTH] [-o OFFSET] [-s SIZE] [-S STEP] [-f FMT] [-q] IMG —
// qemu-img bench: COUNT requests of SIZE bytes, DEPTH in flight, offsets stepping by STEP.
import { ImageError } from '../../errors.js'
import { flag, stringOption } from '../getopt.js'
import { parseSize } from '../size.js'
import { oneOperand, openOperand, parseArgs, type Command } from '../context.js'

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
  ])
  const filename = oneOperand(parsed)
  const count = Number(stringOption(parsed, 'count') ?? 75000)
  const depth = Number(stringOption(parsed, 'depth') ?? 64)
  const offset = parseSize(stringOption(parsed, 'offset') ?? '0')
  const size = parseSize(stringOption(parsed, 'size') ?? '4096')
  const step = stringOption(parsed, 'step') === undefined ? size : parseSize(stringOption(parsed, 'step')!)
  const write = flag(parsed, 'write')
  const patternByte = Number(stringOption(parsed, 'pattern') ?? 0)
  const flushIntervalText = stringOption(parsed, 'flush-interval')
  const flushInterval = flushIntervalText === undefined ? 0 : Number(flushIntervalText)
  if (!Number.isInteger(count) || count < 1) throw new ImageError('INVALID_ARGUMENT', 'Invalid request count specified')
  if (!Number.isInteger(depth) || depth < 1) throw new ImageError('INVALID_ARGUMENT', 'Invalid queue depth specified')
  if (flushInterval && !write) throw new ImageError('INVALID_ARGUMENT', '--flush-interval is only available in write tests')
  if (flushInterval && flushInterval < depth) throw new ImageError('INVALID_ARGUMENT', 'Flush interval can\'t be smaller than depth')
  const device = await openOperand(filename, parsed, { writable: write })
  try {
    if (size > device.size) throw new ImageError('INVALID_ARGUMENT', 'Buffer size exceeds image size')
    if (!flag(parsed, 'quiet')) {
      ctx.out(`Sending ${count} ${write ? 'write' : 'read'} requests, ${size} bytes each, ${depth} in parallel (starting at offset ${offset}, step size ${step})\n`)
    }
    const buffer = new Uint8Array(size).fill(patternByte)
    const started = performance.now()
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
        if (at + size > device.size) throw new ImageError('IO', 'Failed request: Input/output error')
        if (write) {
          await device.write(at, buffer)
          if (flushInterval && issued % flushInterval === 0) await device.flush()
        } else {
          await device.read(at, size)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(depth, count) }, worker))
    if (write) await device.flush()
    const seconds = (performance.now() - started) / 1000
    if (!flag(parsed, 'quiet')) ctx.out(`Run completed in ${seconds.toFixed(3)} seconds.\n`)
  } finally {
    await device.close()
  }
  return 0
}
