// qimg compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] A B — exit 0 same, 1 different, 2 open error
import { compareImages } from '../../commands/compare.js'
import { ImageError } from '../../errors.js'
import { CodecPool, decodeThreads } from '../../node/pool.js'
import type { BlockDevice } from '../../format/device.js'
import { flag } from '../getopt.js'
import { BAR_SPEC, cliProgress, PROGRESS_SPEC } from '../progress-option.js'
import { openOperand, parseArgs, reportError, type Command } from '../context.js'

export const compare: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'F', value: true, key: 'format2' },
    { short: 's', long: 'strict', value: false, key: 'strict' },
    BAR_SPEC,
    PROGRESS_SPEC,
    { short: 'T', long: 'source-cache', value: true, key: 'cache' },
  ])
  if (parsed.operands.length !== 2) throw new ImageError('INVALID_ARGUMENT', 'Expecting two image file names')
  const quiet = flag(parsed, 'quiet')
  const devices: BlockDevice[] = []
  // Compressed clusters of either image are decompressed on worker threads (started on the first).
  const pool = new CodecPool(decodeThreads())
  try {
    try {
      devices.push(await openOperand(parsed.operands[0]!, parsed, { pool }))
      devices.push(await openOperand(parsed.operands[1]!, parsed, { pool }, parsed.options.has('format2') ? 'format2' : 'format'))
    } catch (e) {
      reportError(ctx, (e as Error).message)
      return 2
    }
    const messages: string[] = []
    // qemu_progress_init(progress, 2.0); the verdict follows the last line, then its newline.
    const progress = cliProgress(parsed, ctx, { minSkip: 2, finalLine: false })
    try {
      const result = await compareImages(devices[0]!, devices[1]!, {
        strict: flag(parsed, 'strict'),
        names: [parsed.operands[0]!, parsed.operands[1]!],
        progress: progress.meter,
        messages,
      })
      // A difference ends the comparison where it was found: no 100 % then.
      if (result.exitCode === 0) progress.meter.end()
      if (!quiet) for (const line of result.messages) ctx.out(line + '\n')
      progress.dispose()
      return result.exitCode
    } catch (e) {
      progress.dispose()
      reportError(ctx, (e as Error).message)
      // qemu-img's qprintf lines sit in its stdout buffer until exit: after the error.
      if (!quiet) for (const line of messages) ctx.out(line + '\n')
      return 4
    }
  } finally {
    for (const d of devices) await d.close()
    await pool.close()
  }
}
