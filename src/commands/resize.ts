// `resize`: grow (the L1 table grows, the new area reads zeros, optional preallocation) or
// shrink (clusters past the end freed, the file's tail cut) an image, as qemu-img resize does.
import { canResize } from '../format/capabilities.js'
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'
import { Qcow2Image } from '../qcow2/image.js'
import { l1EntriesFor } from '../qcow2/geometry.js'
import { MAX_L1_BYTES } from '../qcow2/spec.js'
import { RawImage } from '../raw.js'

/** Options of {@link resizeImage}. */
export interface ResizeOptions {
  shrink?: boolean
  preallocation?: 'off' | 'metadata' | 'falloc' | 'full'
}

/** Changes the virtual size of the (writable) top image of `device` to `size`. */
export async function resizeImage(device: BlockDevice, size: number, options: ResizeOptions = {}): Promise<void> {
  const driver = device.driver
  const oldSize = driver.virtualSize
  if (size <= 0) throw new ImageError('INVALID_ARGUMENT', 'New image size must be positive')
  // qemu-img checks preallocation first: it needs the image to grow (the same size will not do).
  const prealloc = options.preallocation ?? 'off'
  if (prealloc !== 'off' && size <= oldSize) throw new ImageError('INVALID_ARGUMENT', 'Preallocation can only be used for growing images')
  if (size < oldSize && !options.shrink) {
    throw new ImageError('INVALID_ARGUMENT', "Use the --shrink option to perform a shrink operation.\nqimg: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.")
  }
  if (driver instanceof RawImage) {
    if (prealloc === 'metadata') throw new ImageError('INVALID_ARGUMENT', 'Unsupported preallocation mode: metadata')
    await driver.setVirtualSize(size, prealloc)
    return
  }
  if (!(driver instanceof Qcow2Image)) {
    // Every other format resizes through its Resizable capability, or not at all (QEMU's text).
    if (!canResize(driver)) throw new ImageError('UNSUPPORTED', 'Image format driver does not support resize', { file: driver.storage.name })
    await driver.resize(size, { preallocation: prealloc })
    await device.flush()
    return
  }
  if (size % 512 !== 0) throw new ImageError('INVALID_ARGUMENT', 'The new size must be a multiple of 512')
  const header = driver.layout.header
  if (header.version < 3 && header.snapshotCount > 0) throw new ImageError('UNSUPPORTED', "Can't resize a v2 image which has snapshots")
  const writer = driver.writer
  const cs = driver.layout.geometry.clusterSize
  if (size > oldSize) {
    const entries = l1EntriesFor(driver.layout.geometry, size)
    if (entries * 8 > MAX_L1_BYTES) throw new ImageError('INVALID_ARGUMENT', 'Failed to grow the L1 table: File too large')
    if (entries > header.l1Size) await writer.growL1(entries)
    await driver.setVirtualSize(size)
    if (prealloc !== 'off') await writer.preallocate(oldSize, size - oldSize, prealloc)
  } else if (size < oldSize) {
    // Zero the kept part of the last cluster, so a later grow does not bring old bytes back.
    const tail = Math.min(oldSize, Math.ceil(size / cs) * cs)
    if (tail > size) await device.writeZeroes(size, tail - size)
    if (oldSize > tail) await writer.deallocate(tail, oldSize - tail)
    await driver.setVirtualSize(size)
    await writer.truncateUnused()
  }
  await driver.flush()
}
