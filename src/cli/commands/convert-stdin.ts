// convert with standard input as the source (`qimg convert -f raw -O qcow2 - disk.qcow2`): the
// stream is read once, in order. To a pipe, the feed writers of convert-stream.ts; to a file,
// a new image written piece by piece (zero pieces left out, so it stays sparse). The size is
// the stream's when it says it (VMDK), else --size, else where it ends: then the image is made
// empty and grows, so only formats that resize (raw, qcow2) can be written without --size.
import { ImageError } from '../../errors.js'
import { findFormatModule } from '../../formats.js'
import { createWithModule } from '../../node/create.js'
import { openImage } from '../../node/open.js'
import type { CodecPool } from '../../node/pool.js'
import { descriptorSource } from '../../node/stdio.js'
import { deviceWriter, finishGrown } from '../../stream/device-writer.js'
import { openStreamInput, type StreamInput } from '../../stream/stream-input.js'
import { convertStreamToSink, type StreamRequest } from './convert-stream.js'

/** Formats whose drivers resize, so an image of them can grow with the stream. */
const GROWABLE = new Set(['raw', 'qcow2'])

/** What convert from standard input needs besides the stream request. */
export interface StdinRequest extends StreamRequest {
  sourceFormat: string | undefined
  /** --size: the virtual size when the stream does not say it. */
  size: number | undefined
  cache: 'unsafe' | 'writeback'
}

/** Opens standard input as the source; checks --size against a size the stream states. */
async function openInput(request: StdinRequest, pool: CodecPool): Promise<StreamInput> {
  const format = request.sourceFormat
  if (format !== undefined && format !== 'raw' && format !== 'vmdk') {
    throw new ImageError('UNSUPPORTED', `convert -f ${format} from standard input: only raw and vmdk (streamOptimized) can be read from a pipe (the other formats keep tables that point anywhere in the file); give it as a file`)
  }
  const input = await openStreamInput(descriptorSource(), format, pool.decompressors().deflate!)
  if (input.size !== undefined && request.size !== undefined && input.size !== request.size) {
    throw new ImageError('INVALID_ARGUMENT', `standard input: --size ${request.size} differs from the ${input.size} bytes the VMDK header states`)
  }
  return input
}

/** Runs `convert - OUTPUT`; OUTPUT `-` is standard output. */
export async function convertFromStdin(output: string, request: StdinRequest, pool: CodecPool): Promise<void> {
  const input = await openInput(request, pool)
  if (output === '-') return convertStreamToSink(input, request, request.size)
  if (request.compress) throw new ImageError('UNSUPPORTED', 'convert -c from standard input to a file is not supported; compress from a file, or to standard output')
  const known = input.size ?? request.size
  const format = request.targetFormat
  if (known === undefined && !GROWABLE.has(format)) {
    throw new ImageError('INVALID_ARGUMENT', `convert -O ${format} from standard input: give the virtual size with --size (a ${format} image cannot grow with the stream; raw and qcow2 can)`)
  }
  const module = findFormatModule(format)!
  await createWithModule(output, module, known ?? 0, request.opts)
  const target = await openImage(output, { format, writable: true, cache: request.cache })
  try {
    const progress = request.progress
    progress?.phase('write', known ?? 0)
    const length = await input.feed(deviceWriter(target, known === undefined, (n) => progress?.add(n)), known)
    if (known === undefined) await finishGrown(target, length, format !== 'raw')
    await target.flush()
    progress?.end()
  } finally {
    await target.close()
  }
}
