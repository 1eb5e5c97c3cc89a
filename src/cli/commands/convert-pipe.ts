// convert's pipe forms: `-` as the output (standard output) or the input (standard input).
import { ImageError } from '../../errors.js'
import { CodecPool, decodeThreads } from '../../node/pool.js'
import { flag, type Parsed } from '../getopt.js'
import { openOperand, type CliContext } from '../context.js'
import { cliProgress } from '../progress-option.js'
import { convertToSink, type StreamRequest } from './convert-stream.js'

/** What convert parsed that the pipe forms use. */
export interface PipeOptions extends Omit<StreamRequest, 'progress'> {
  noCreate: boolean
  backing: string | undefined
}

/** Runs `convert IN OUT` where IN or OUT (or both) is `-`. */
export async function convertPipe(source: string, output: string, parsed: Parsed, ctx: CliContext, options: PipeOptions): Promise<number> {
  if (options.noCreate) throw new ImageError('INVALID_ARGUMENT', 'convert -n: standard output is not an existing image (a pipe is written from its first byte)')
  if (options.backing !== undefined) throw new ImageError('UNSUPPORTED', 'convert -B with a pipe: a backing file needs a seekable image')
  if (flag(parsed, 'bitmaps')) throw new ImageError('UNSUPPORTED', 'convert --bitmaps with a pipe is not supported')
  if (source === '-' && output === '-' && options.targetFormat === 'qcow2') {
    throw new ImageError('INVALID_ARGUMENT', 'convert -O qcow2 from standard input to standard output is impossible: a qcow2 stream puts its tables before the data, so it needs a seekable input (a file or an image) or a seekable output')
  }
  const progress = cliProgress(parsed, ctx, { bar: flag(parsed, 'progress') && !flag(parsed, 'quiet'), barToStderr: output === '-' })
  try {
    // Standard input as the source is refused, not half-read: the generic copy asks the source
    // for block status and reads it out of order.
    if (source === '-') throw new ImageError('UNSUPPORTED', 'convert: the source cannot be standard input; give it as a file or an image name')
    const pool = new CodecPool(decodeThreads())
    try {
      const device = await openOperand(source, parsed, { pool })
      try {
        await convertToSink(device, { ...options, progress: progress.meter })
      } finally {
        await device.close()
      }
    } finally {
      await pool.close()
    }
    return 0
  } finally {
    progress.dispose()
  }
}
