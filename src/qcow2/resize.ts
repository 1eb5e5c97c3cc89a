// qcow2_co_truncate for qemu-img resize and qemu-io truncate: a grow extends the L1 table, then
// the size, then preallocates the new area; a shrink clears the kept part of the last cluster,
// frees the clusters past the end, then sets the size and cuts the file's tail.
import { ImageError } from '../errors.js'
import type { ResizeRequest } from '../format/capabilities.js'
import { l1EntriesFor } from './geometry.js'
import type { Qcow2Image } from './image.js'
import { MAX_L1_BYTES } from './spec.js'

/** Changes the virtual size of a writable `image` to `size` (the generic checks are made). */
export async function resizeQcow2(image: Qcow2Image, size: number, request: ResizeRequest): Promise<void> {
  if (size % 512 !== 0) throw new ImageError('INVALID_ARGUMENT', 'The new size must be a multiple of 512')
  const { header, geometry } = image.layout
  if (header.version < 3 && header.snapshotCount > 0) throw new ImageError('UNSUPPORTED', "Can't resize a v2 image which has snapshots")
  const writer = image.writer
  const oldSize = image.virtualSize
  const cs = geometry.clusterSize
  if (size > oldSize) {
    const entries = l1EntriesFor(geometry, size)
    if (entries * 8 > MAX_L1_BYTES) throw new ImageError('INVALID_ARGUMENT', 'Failed to grow the L1 table: File too large')
    if (entries > header.l1Size) await writer.growL1(entries)
    await image.setVirtualSize(size)
    if (request.preallocation !== 'off') await writer.preallocate(oldSize, size - oldSize, request.preallocation)
  } else if (size < oldSize) {
    // Zero the kept part of the last cluster, so a later grow does not bring old bytes back.
    const tail = Math.min(oldSize, Math.ceil(size / cs) * cs)
    if (tail > size) await request.writeZeroes(size, tail - size)
    if (oldSize > tail) await writer.deallocate(tail, oldSize - tail)
    await image.setVirtualSize(size)
    await writer.truncateUnused()
  }
}

/**
 * The first sizing of a new, empty image (qcow2_co_create): the L1 table for `size`, the size
 * in the header, then the preallocation.
 */
export async function sizeNewImage(image: Qcow2Image, size: number, preallocation: ResizeRequest['preallocation']): Promise<void> {
  const entries = l1EntriesFor(image.layout.geometry, size)
  if (entries > 0) await image.writer.growL1(entries)
  await image.setVirtualSize(size)
  if (preallocation !== 'off' && size > 0) await image.writer.preallocate(0, size, preallocation)
}

/** Every cluster deallocated, so reads go to the backing file, and the file's tail cut. */
export async function emptyQcow2(image: Qcow2Image): Promise<void> {
  await image.writer.deallocate(0, image.virtualSize)
  await image.writer.truncateUnused()
}
