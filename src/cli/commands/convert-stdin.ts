// convert from standard input (`-`): raw bytes or a streamOptimized VMDK, into a file or a pipe.
import { ImageError } from '../../errors.js'
import type { CliContext } from '../context.js'
import type { Parsed } from '../getopt.js'
import type { PipeOptions } from './convert-pipe.js'
import type { ProgressMeter } from '../../commands/progress-meter.js'

/** Converts standard input to `output`. */
export async function convertFromStdin(_output: string, _parsed: Parsed, _ctx: CliContext, _options: PipeOptions & { progress: ProgressMeter }): Promise<number> {
  throw new ImageError('UNSUPPORTED', 'convert from standard input is not implemented yet')
}
