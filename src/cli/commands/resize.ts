// qimg resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] IMG [+|-]SIZE
import { resizeImage } from '../../commands/resize.js'
import { ImageError } from '../../errors.js'
import { flag, stringOption } from '../getopt.js'
import { parseSize } from '../size.js'
import { oneOperand, openOperand, parseArgs, type Command } from '../context.js'

export const resize: Command = async (args, ctx) => {
  // A size like "-1G" must not be taken for an option: qemu-img stops option parsing there.
  const sizeIndex = args.findIndex((a, i) => i > 0 && /^[+-]?[0-9.]+[a-zA-Z]?$/.test(a) && !['-f', '--preallocation', '--object'].includes(args[i - 1]!))
  const sizeText = sizeIndex >= 0 ? args[sizeIndex]! : undefined
  const rest = sizeIndex >= 0 ? args.filter((_, i) => i !== sizeIndex) : args
  const parsed = parseArgs(rest, [
    { long: 'shrink', value: false },
    { long: 'preallocation', value: true },
  ])
  if (sizeText === undefined) throw new ImageError('INVALID_ARGUMENT', 'Expecting image file name and size')
  const filename = oneOperand(parsed)
  const relative = sizeText.startsWith('+') ? 1 : sizeText.startsWith('-') ? -1 : 0
  let delta: number
  try {
    delta = parseSize(relative ? sizeText.slice(1) : sizeText)
  } catch {
    throw new ImageError('INVALID_ARGUMENT', 'Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nqimg: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.')
  }
  const prealloc = stringOption(parsed, 'preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw new ImageError('INVALID_ARGUMENT', `Invalid preallocation mode: '${prealloc}'`)
  const device = await openOperand(filename, parsed, { writable: true })
  try {
    const size = relative ? device.size + relative * delta : delta
    await resizeImage(device, size, { shrink: flag(parsed, 'shrink'), preallocation: prealloc as 'off' })
  } finally {
    await device.close()
  }
  if (!flag(parsed, 'quiet')) ctx.out('Image resized.\n')
  return 0
}
