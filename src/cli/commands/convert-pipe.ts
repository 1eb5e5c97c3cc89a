// convert's pipe forms: `-` as the output (standard output) or the input (standard input).
import { ImageError } from '../../errors.js'
import { CodecPool, decodeThreads } from '../../node/pool.js'
import { flag, stringOption, type Parsed } from '../getopt.js'
import { parseSize } from '../size.js'
import { openOperand, type CliContext } from '../context.js'
import { cliProgress } from '../progress-option.js'
import { convertFromStdin } from './convert-stdin.js'
import { convertToSink, QCOW2_PIPE_TO_PIPE, type StreamRequest } from './convert-stream.js'

/** What convert parsed that the pipe forms use. */
export interface PipeOptions extends Omit<StreamRequest, 'progress'> {
  noCreate: boolean
  backing: string | undefined
  cache: 'unsafe' | 'writeback'
}

/** Runs `convert IN OUT` where IN or OUT (or both) is `-`. */
export async function convertPipe(source: string, output: string, parsed: Parsed, ctx: CliContext, options: PipeOptions): Promise<number> {
  if (options.noCreate) throw new ImageError('INVALID_ARGUMENT', 'convert -n: standard output is not an existing image (a pipe is written from its first byte)')
  if (options.backing !== undefined) throw new ImageError('UNSUPPORTED', 'convert -B with a pipe: a backing file needs a seekable image')
  if (flag(parsed, 'bitmaps')) throw new ImageError('UNSUPPORTED', 'convert --bitmaps with a pipe is not supported')
  if (source === '-' && output === '-' && options.targetFormat === 'qcow2') {
    throw new ImageError('INVALID_ARGUMENT', QCOW2_PIPE_TO_PIPE)
  }
  const sizeText = stringOption(parsed, 'size')
  if (sizeText !== undefined && source !== '-') throw new ImageError('INVALID_ARGUMENT', 'convert --size: only a source read from standard input takes a size (an image has its own)')
  const size = sizeText === undefined ? undefined : parseSize(sizeText)
  const progress = cliProgress(parsed, ctx, { bar: flag(parsed, 'progress') && !flag(parsed, 'quiet'), barToStderr: output === '-' })
  try {
    const pool = new CodecPool(decodeThreads())
    try {
      if (source === '-') {
        await convertFromStdin(output, { ...options, progress: progress.meter, sourceFormat: stringOption(parsed, 'format'), size }, pool)
        return 0
      }
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
