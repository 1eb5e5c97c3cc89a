// qcow2_co_can_store_new_dirty_bitmap (block/qcow2-bitmap.c): whether one more persistent
// bitmap fits the image, with QEMU's reasons, checked before qemu-img bitmap --add creates it.
import { MAX_GRANULARITY_BITS, MAX_NAME_BYTES, bitmapBytes, entrySize } from './bitmaps.js'
import type { BitmapSet } from './bitmaps-store.js'
import type { Qcow2Layout } from './open.js'
import { MAX_BITMAP_DIRECTORY_BYTES, MAX_BITMAP_PHYS_BYTES, MAX_BITMAP_TABLE_ENTRIES, MAX_BITMAPS } from './spec.js'

/** Why bitmap `name` of `granularity` cannot be added (undefined when it can). */
export function bitmapRefusal(set: BitmapSet | undefined, layout: Qcow2Layout, virtualSize: number, name: string, granularity: number): string | undefined {
  if (!set || layout.header.version < 3) return 'Cannot store dirty bitmaps in qcow2 v2 files'
  // check_constraints_on_bitmap
  if (Math.log2(granularity) > MAX_GRANULARITY_BITS) return `Granularity exceeds maximum (${2 ** MAX_GRANULARITY_BITS} bytes)`
  const bytes = bitmapBytes(virtualSize, granularity)
  if (bytes > MAX_BITMAP_PHYS_BYTES || bytes > MAX_BITMAP_TABLE_ENTRIES * layout.geometry.clusterSize) return 'Too much space will be occupied by the bitmap. Use larger granularity'
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) return `Name length exceeds maximum (${MAX_NAME_BYTES} characters)`
  if (set.bitmaps.length + 1 > MAX_BITMAPS) return 'Maximum number of persistent bitmaps is already reached'
  const directoryBytes = [...set.bitmaps.map((b) => b.name), name].reduce((n, b) => n + entrySize(b), 0)
  if (directoryBytes > MAX_BITMAP_DIRECTORY_BYTES) return 'Not enough space in the bitmap directory'
  return undefined
}
