// qimg dd [--image-opts] [-U] [-f FMT] [-O OUTPUT_FMT] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT
// qemu-img's img_dd: the output is always created (-O format, raw by default) with the input's
// size (or count*bs when smaller) minus skip*bs, then every block is read and written as data.
import { ImageError, isImageError } from '../../errors.js'
import { createWithModule } from '../../node/create.js'
import { findFormatModule } from '../../formats.js'
import { openImage } from '../../node/open.js'
import { getopt, stringOption } from '../getopt.js'
import { cvtnum } from '../size.js'
import { openOperand, reportError, type Command } from '../context.js'

const INT_MAX = 2 ** 31 - 1
/** Blocks are copied in reads of about this many bytes (the result does not depend on it). */
const CHUNK_BYTES = 1024 * 1024
/** Formats QEMU 7.2 knows (qimg may lack some: they are refused as unsupported, not unknown). */
const QEMU_FORMATS = ['bochs', 'cloop', 'dmg', 'luks', 'parallels', 'qcow', 'qcow2', 'qed', 'raw', 'vdi', 'vhdx', 'vmdk', 'vpc', 'vvfat']

interface Operands { bs: number; count?: number; skip?: number; input?: string; output?: string }

/** The key=value operands, checked as img_dd does (each one as it comes). */
function parseOperands(texts: readonly string[]): Operands {
  const o: Operands = { bs: 512 }
  for (const text of texts) {
    const eq = text.indexOf('=')
    if (eq < 0) throw new ImageError('INVALID_ARGUMENT', `unrecognized operand ${text}`)
    const key = text.slice(0, eq)
    const value = text.slice(eq + 1)
    if (key === 'bs') o.bs = cvtnum('bs', value, 1n, BigInt(INT_MAX))
    else if (key === 'count') o.count = cvtnum('count', value)
    else if (key === 'skip') o.skip = cvtnum('skip', value)
    else if (key === 'if') o.input = value
    else if (key === 'of') o.output = value
    else throw new ImageError('INVALID_ARGUMENT', `unrecognized operand ${key}`)
  }
  return o
}

export const dd: Command = async (args, ctx) => {
  const parsed = getopt(args, [
    { short: 'h', long: 'help', value: false },
    { long: 'object', value: true },
    { long: 'image-opts', value: false },
    { short: 'U', long: 'force-share', value: false, key: 'force-share' },
    { short: 'f', value: true, key: 'format' },
    { short: 'O', value: true, key: 'target-format' },
  ], 'qemu-img')
  const o = parseOperands(parsed.operands)
  if (o.input === undefined || o.output === undefined) throw new ImageError('INVALID_ARGUMENT', 'Must specify both input and output files')
  const outputFormat = stringOption(parsed, 'target-format') ?? 'raw'
  const device = await openOperand(o.input, parsed)
  try {
    const module = findFormatModule(outputFormat)
    if (!module && !QEMU_FORMATS.includes(outputFormat)) throw new ImageError('INVALID_ARGUMENT', 'Unknown file format')
    if (!module?.create) throw new ImageError('UNSUPPORTED', `dd -O ${outputFormat}: qimg cannot create ${outputFormat} images`)
    let size = device.size
    if (o.count !== undefined && o.count * o.bs < size) size = o.count * o.bs
    const skipBytes = (o.skip ?? 0) * o.bs
    const skipPastEnd = o.skip !== undefined && skipBytes > size
    const outputSize = skipPastEnd ? 0 : size - skipBytes
    try {
      // The module rounds the size as its QEMU driver does (whole sectors for raw and qcow2).
      await createWithModule(o.output, module, outputSize, new Map())
    } catch (e) {
      if (isImageError(e)) throw new ImageError(e.code, `${o.output}: error while creating output image: ${e.message}`, { cause: e })
      throw e
    }
    const target = await openImage(o.output, { format: outputFormat, writable: true })
    try {
      // Not an error for qemu-img: an empty output, like dd(1), and exit status 0.
      if (skipPastEnd) reportError(ctx, `${o.input}: cannot skip to specified offset`)
      const chunk = Math.max(o.bs, Math.floor(CHUNK_BYTES / o.bs) * o.bs)
      for (let inPos = skipPastEnd ? size : skipBytes, outPos = 0; inPos < size;) {
        const length = Math.min(chunk, size - inPos)
        await target.write(outPos, await device.read(inPos, length))
        inPos += length
        outPos += length
      }
    } finally {
      await target.close()
    }
  } finally {
    await device.close()
  }
  return 0
}
