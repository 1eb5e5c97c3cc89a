// qimg rebase [-f FMT] [-u] -b BACKING [-F|-B FMT] [-p] [-q] [-U] IMG
import { rebaseImage } from '../../commands/rebase.js'
import { ImageError } from '../../errors.js'
import { pathCombine } from '../../format/chain.js'
import { openImage } from '../../node/open.js'
import { flag, stringOption } from '../getopt.js'
import { BAR_SPEC, cliProgress, PROGRESS_SPEC } from '../progress-option.js'
import { oneOperand, openOperand, operandImage, parseArgs, type Command } from '../context.js'

export const rebase: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'b', long: 'backing', value: true, key: 'backing' },
    { short: 'F', value: true, key: 'backing-format' },
    { short: 'B', long: 'backing-format', value: true, key: 'backing-format' },
    { short: 'u', long: 'unsafe', value: false, key: 'unsafe' },
    BAR_SPEC,
    PROGRESS_SPEC,
    { short: 't', value: true, key: 'cache' },
    { short: 'T', value: true, key: 'source-cache' },
    { short: 'c', long: 'compress', value: false, key: 'compress' },
  ])
  const filename = oneOperand(parsed)
  const backing = stringOption(parsed, 'backing')
  if (backing === undefined) throw new ImageError('INVALID_ARGUMENT', "Must specify backing file (-b) or use unsafe mode (-u)\nTry 'qimg --help' for more information")
  if (flag(parsed, 'compress')) throw new ImageError('UNSUPPORTED', 'rebase -c: compressed writes are not supported yet')
  const unsafe = flag(parsed, 'unsafe')
  const format = stringOption(parsed, 'backing-format')
  const name = backing === '' ? undefined : backing
  const image = await openOperand(filename, parsed, { writable: true, fileReferences: unsafe ? 'ignore' : 'follow' })
  // A relative backing name is relative to the image's file, not to an --image-opts string.
  const path = operandImage(filename, parsed).filename
  try {
    let newBacking
    if (name !== undefined) {
      try {
        newBacking = unsafe ? undefined : await openImage(pathCombine(path, name), { format })
      } catch (e) {
        throw new ImageError('INVALID_ARGUMENT', `Could not open new backing file '${pathCombine(path, name)}': ${(e as Error).message}`, { cause: e })
      }
    }
    // qemu_progress_init(progress, 2.0): a line per two percent moved.
    const progress = cliProgress(parsed, ctx, { minSkip: 2 })
    try {
      await rebaseImage(image, { newBacking, name, format, unsafe, progress: progress.meter })
      progress.meter.end()
    } finally {
      progress.dispose()
      await newBacking?.close()
    }
  } finally {
    await image.close()
  }
  return 0
}
