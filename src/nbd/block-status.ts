// The extents NBD_CMD_BLOCK_STATUS answers for each context, computed as qemu-nbd 7.2 does
// (nbd/server.c blockstatus_to_extents, blockalloc_to_extents, bitmap_to_extents): runs with
// equal flags merged, at most `maxExtents` of them (1 with REQ_ONE), the last one possibly
// shorter than the rest of the request.
import type { BlockDevice } from '../format/device.js'
import type { PersistentBitmap } from '../format/bitmap-capability.js'
import { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO } from './constants.js'
import type { StatusExtent } from './transmission.js'

const U32_MAX = 0xffff_ffff

/** Collects extents, merging equal flags (nbd_extent_array_add); false once full. */
export class ExtentList {
  readonly extents: StatusExtent[] = []
  readonly #max: number
  constructor(maxExtents: number) {
    this.#max = maxExtents
  }

  add(length: number, flags: number): boolean {
    if (length === 0) return true
    const last = this.extents[this.extents.length - 1]
    if (last && last.flags === flags && last.length + length <= U32_MAX) {
      last.length += length
      return true
    }
    if (this.extents.length >= this.#max) return false
    this.extents.push({ length, flags })
    return true
  }
}

/** base:allocation: HOLE where no data, ZERO where reads are zeros, through the whole chain. */
export async function baseAllocationExtents(device: BlockDevice, offset: number, length: number, maxExtents: number): Promise<StatusExtent[]> {
  const list = new ExtentList(maxExtents)
  const end = offset + length
  for (let at = offset; at < end;) {
    const status = await device.blockStatus(at, end - at)
    const flags = (status.data ? 0 : NBD_STATE_HOLE) | (status.zero ? NBD_STATE_ZERO : 0)
    if (!list.add(status.length, flags)) break
    at += status.length
  }
  return list.extents
}

/**
 * qemu:allocation-depth of one run: 0 when no layer allocates it, else 1 + the index of the
 * layer that does (bdrv_is_allocated_above without want_zero). A run past the end of a shorter
 * backing file counts as allocated in that backing layer (its synthesized zeros).
 */
async function allocationDepthAt(device: BlockDevice, offset: number, maxLength: number): Promise<{ depth: number; length: number }> {
  let layer: BlockDevice = device
  let length = maxLength
  for (let depth = 1; ; depth++) {
    const extent = await layer.driver.getExtent(offset, length)
    if (extent.kind !== 'unallocated') return { depth, length: extent.length }
    const below = layer.backing
    if (!below) return { depth: 0, length: extent.length }
    if (offset >= below.size) return { depth: depth + 1, length: extent.length }
    length = Math.min(extent.length, below.size - offset)
    layer = below
  }
}

export async function allocationDepthExtents(device: BlockDevice, offset: number, length: number, maxExtents: number): Promise<StatusExtent[]> {
  const list = new ExtentList(maxExtents)
  const end = offset + length
  for (let at = offset; at < end;) {
    const run = await allocationDepthAt(device, at, end - at)
    if (!list.add(run.length, run.depth)) break
    at += run.length
  }
  return list.extents
}

/** Whether bit `n` of a bitmap is set. */
function bitSet(bits: Uint8Array, n: number): boolean {
  return (bits[n >> 3]! & (1 << (n & 7))) !== 0
}

/** The first bit at or after `n` (below `limit`) whose state differs from `dirty`. */
function nextChange(bits: Uint8Array, n: number, limit: number, dirty: boolean): number {
  const same = dirty ? 0xff : 0
  while (n < limit) {
    if ((n & 7) === 0 && n + 8 <= limit && bits[n >> 3] === same) {
      n += 8
      continue
    }
    if (bitSet(bits, n) !== dirty) return n
    n++
  }
  return limit
}

/** qemu:dirty-bitmap:NAME: DIRTY where the bitmap has bits set. */
export function bitmapExtents(bitmap: PersistentBitmap, offset: number, length: number, maxExtents: number): StatusExtent[] {
  const list = new ExtentList(maxExtents)
  const g = bitmap.granularity
  const end = offset + length
  const lastBit = Math.ceil(Math.min(end, bitmap.size) / g)
  for (let at = offset; at < end;) {
    if (at >= bitmap.size) {
      list.add(end - at, 0)
      break
    }
    const bit = Math.floor(at / g)
    const dirty = bitSet(bitmap.bits, bit)
    const changeBit = nextChange(bitmap.bits, bit, lastBit, dirty)
    const runEnd = Math.min(end, changeBit * g)
    if (!list.add(runEnd - at, dirty ? NBD_STATE_DIRTY : 0)) break
    at = runEnd
  }
  return list.extents
}
