// `commit`: write what an image (and the layers above the base) allocate down into the base,
// growing the base when it is smaller, then empty the image unless asked to keep it (-d).
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'
import { canMakeEmpty } from '../format/capabilities.js'
import { resizeImage } from './resize.js'
import { NO_PROGRESS, type PhasePlace, type ProgressMeter } from './progress-meter.js'

/** Options for {@link commitImage}. */
export interface CommitOptions {
  /** Keep the image's data after committing (-d; implied by -b). */
  keep?: boolean
  /** Receives the progress: phase "commit", the guest bytes walked ({@link CommitOptions.place} of the command's). */
  progress?: ProgressMeter | undefined
  place?: PhasePlace | undefined
}

/**
 * Commits `top` (read-only chain whose layers down to — not including — the layer at `depth`
 * hold the data) into `base`, opened writable by the caller.
 */
export async function commitImage(top: BlockDevice, depth: number, base: BlockDevice, emptyTop: (() => Promise<void>) | undefined, options: CommitOptions = {}): Promise<void> {
  if (depth < 1) throw new ImageError('INVALID_ARGUMENT', 'The base must be a backing file of the image')
  if (base.size < top.size) await resizeImage(base, top.size)
  const layers = top.chain.slice(0, depth)
  const progress = options.progress ?? NO_PROGRESS
  progress.phase('commit', top.size, options.place)
  const step = 2 * 1024 * 1024
  for (let offset = 0; offset < top.size;) {
    const length = Math.min(step, top.size - offset)
    // Ranges allocated in any layer above the base are copied; the rest is already in the base.
    for (let at = offset; at < offset + length;) {
      let allocated = false
      let run = offset + length - at
      for (const layer of layers) {
        const status = await layer.isAllocated(at, run)
        run = Math.min(run, status.length)
        if (status.allocated) allocated = true
      }
      if (allocated) {
        const status = await top.blockStatus(at, run)
        run = status.length
        if (status.zero && !status.data) await base.writeZeroes(at, run)
        else await base.write(at, await top.read(at, run))
      }
      at += run
    }
    offset += length
    progress.add(length)
  }
  await base.flush()
  if (!options.keep && emptyTop) await emptyTop()
}

/** Empties the top image of `device` through its MakeEmpty capability (QEMU's make_empty). */
export async function emptyImage(device: BlockDevice): Promise<void> {
  const driver = device.driver
  if (!canMakeEmpty(driver)) throw new ImageError('UNSUPPORTED', `commit: cannot empty a '${driver.format}' image`)
  await driver.makeEmpty()
}
