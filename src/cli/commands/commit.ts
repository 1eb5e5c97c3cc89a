// qimg commit [-f FMT] [-b BASE] [-d] [-p] [-q] IMG
import { realpath } from 'node:fs/promises'
import { commitImage, emptyImage } from '../../commands/commit.js'
import { ImageError } from '../../errors.js'
import { openImage } from '../../node/open.js'
import { flag, stringOption } from '../getopt.js'
import { BAR_SPEC, cliProgress, PROGRESS_SPEC } from '../progress-option.js'
import { oneOperand, openOperand, parseArgs, type Command } from '../context.js'

const canonical = (path: string) => realpath(path).catch(() => path)

export const commit: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'b', long: 'base', value: true, key: 'base' },
    { short: 'd', value: false, key: 'keep' },
    BAR_SPEC,
    PROGRESS_SPEC,
    { short: 't', value: true, key: 'cache' },
    { short: 'r', value: true, key: 'rate' },
  ])
  const filename = oneOperand(parsed)
  const baseName = stringOption(parsed, 'base')
  const top = await openOperand(filename, parsed)
  const emptying = !flag(parsed, 'keep') && baseName === undefined
  // qemu_progress_init(progress, 1.f); phases "commit" and, when the image is emptied, "empty".
  const progress = cliProgress(parsed, ctx, { minSkip: 1 })
  const phases = emptying ? 2 : 1
  let emptied = false
  try {
    const chain = top.chain
    if (chain.length < 2) throw new ImageError('INVALID_ARGUMENT', `Image does not have a backing file`)
    let depth = 1
    if (baseName !== undefined) {
      const want = await canonical(baseName)
      depth = -1
      for (let i = 1; i < chain.length; i++) if ((await canonical(chain[i]!.driver.storage.name)) === want) depth = i
      if (depth < 0) throw new ImageError('INVALID_ARGUMENT', `Did not find '${baseName}' in the backing chain of '${filename}'`)
    }
    const baseLayer = chain[depth]!
    const base = await openImage(baseLayer.driver.storage.name, { format: baseLayer.driver.format, writable: true, fileReferences: 'ignore' })
    try {
      // -b implies -d: the layers above the base keep their data.
      await commitImage(top, depth, base, undefined, { keep: true, progress: progress.meter, place: { index: 0, count: phases } })
    } finally {
      await base.close()
    }
    emptied = emptying
  } catch (e) {
    progress.dispose()
    throw e
  } finally {
    await top.close()
  }
  try {
    if (emptied) {
      progress.meter.phase('empty', 1, { index: 1, count: 2 })
      const image = await openOperand(filename, parsed, { writable: true, fileReferences: 'ignore' })
      try {
        await emptyImage(image)
      } finally {
        await image.close()
      }
      progress.meter.add(1)
    }
    progress.meter.end()
  } finally {
    progress.dispose()
  }
  if (!flag(parsed, 'quiet')) ctx.out('Image committed.\n')
  return 0
}
