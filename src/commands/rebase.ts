// `rebase`: change the backing file of an image. Safe mode copies into the image every range it
// does not allocate where the old and the new backing differ, so what the guest sees stays the
// same; unsafe mode (-u) only rewrites the name in the header.
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'
import { canSetBacking } from '../format/capabilities.js'
import { NO_PROGRESS, type ProgressMeter } from './progress-meter.js'

/** Options for {@link rebaseImage}. */
export interface RebaseOptions {
  /** The new backing device, opened by the caller (undefined: no backing, flatten). */
  newBacking: BlockDevice | undefined
  /** Name and format to record in the header. */
  name: string | undefined
  format: string | undefined
  unsafe?: boolean
  /** Receives the progress: phase "copy", the guest bytes compared (safe mode). */
  progress?: ProgressMeter | undefined
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Reads `length` bytes at `offset` of a device, zeros past its end (or without a device). */
async function readOrZero(device: BlockDevice | undefined, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length)
  if (!device || offset >= device.size) return out
  const available = Math.min(length, device.size - offset)
  await device.readInto(out.subarray(0, available), offset)
  return out
}

/** Rebases the writable top image of `image` (its `backing` is the old chain). */
export async function rebaseImage(image: BlockDevice, options: RebaseOptions): Promise<void> {
  const driver = image.driver
  if (!canSetBacking(driver)) throw new ImageError('UNSUPPORTED', `rebase: format '${driver.format}' has no backing file`)
  const progress = options.progress ?? NO_PROGRESS
  progress.phase('copy', options.unsafe ? 0 : image.size)
  if (!options.unsafe) {
    const old = image.backing
    const unit = driver.allocationUnit
    const size = image.size
    const step = Math.max(unit, 1024 * 1024)
    for (let offset = 0; offset < size;) {
      const { allocated, length } = await image.isAllocated(offset, Math.min(step, size - offset))
      if (!allocated) {
        // Compare unit by unit so only differing parts are copied.
        for (let at = offset; at < offset + length; at += unit) {
          const n = Math.min(unit - (at % unit), offset + length - at)
          const [before, after] = await Promise.all([readOrZero(old, at, n), readOrZero(options.newBacking, at, n)])
          if (!equal(before, after)) await image.write(at, before)
        }
      }
      offset += length
      progress.add(length)
    }
  }
  // As qemu-img: the data is copied, then a backing name without a format is refused.
  if (options.name !== undefined && options.format === undefined) {
    throw new ImageError('INVALID_ARGUMENT', `Could not change the backing file to '${options.name}': backing format must be specified`)
  }
  await driver.setBacking(options.name, options.format)
}
