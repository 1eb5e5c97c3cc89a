// qimg resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] IMG [+|-]SIZE
import { resizeImage } from '../../commands/resize.js'
import { ImageError } from '../../errors.js'
import { flag, stringOption } from '../getopt.js'
import { parseSize } from '../size.js'
import { openOperand, parseArgs, type Command } from '../context.js'

export const resize: Command = async (args, ctx) => {
  // qemu-img takes the size from the last argument before parsing options, so that a size
  // like "-1G" is not taken for one.
  if (args.length < 2) throw new ImageError('INVALID_ARGUMENT', "Not enough arguments\nTry 'qimg --help' for more information")
  const sizeText = args[args.length - 1]!
  const parsed = parseArgs(args.slice(0, -1), [
    { long: 'shrink', value: false },
    { long: 'preallocation', value: true },
  ])
  if (parsed.operands.length !== 1) throw new ImageError('INVALID_ARGUMENT', "Expecting image file name and size\nTry 'qimg --help' for more information")
  const filename = parsed.operands[0]!
  const relative = sizeText.startsWith('+') ? 1 : sizeText.startsWith('-') ? -1 : 0
  let delta: number
  try {
    delta = parseSize(relative ? sizeText.slice(1) : sizeText)
  } catch {
    throw new ImageError('INVALID_ARGUMENT', "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.")
  }
  const prealloc = stringOption(parsed, 'preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw new ImageError('INVALID_ARGUMENT', `Invalid preallocation mode '${prealloc}'`)
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
