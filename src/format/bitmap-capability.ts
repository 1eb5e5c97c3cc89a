// Persistent dirty bitmaps as a driver capability (qemu-img bitmap, convert --bitmaps): the
// generic QMP checks live in the commands, the format's own limits behind these methods.
import { ImageError } from '../errors.js'
import type { FormatDriver } from './driver.js'
import { hasMethods } from './capabilities.js'

/** One dirty bitmap as the commands handle it (QEMU's BdrvDirtyBitmap). */
export interface PersistentBitmap {
  readonly name: string
  readonly granularity: number
  /** Guest bytes covered. */
  readonly size: number
  /** Tracks writes ('auto' on disk). */
  enabled: boolean
  /** Found in use: its contents are unknown. */
  readonly inconsistent: boolean
  /**
   * The bits, serialized as qcow2 stores them (bit n covers guest bytes [n*g, (n+1)*g), in
   * byte n/8, least significant bit first): read by NBD's dirty-bitmap context.
   */
  readonly bits: Uint8Array
  clear(): void
  /** Adds the dirty ranges of `src` (hbitmap_merge). */
  merge(src: PersistentBitmap): void
}

/** A format that stores dirty bitmaps in the image. */
export interface PersistentBitmaps {
  /** The image can hold bitmaps at all (qcow2: version 3). */
  readonly storesBitmaps: boolean
  /** Reads the bitmaps without changing the image (those in use come back inconsistent). */
  readBitmaps(): Promise<PersistentBitmap[]>
  /** The bitmaps loaded by a writable open, in the image's order (empty when none are loaded). */
  loadedBitmaps(): readonly PersistentBitmap[]
  /**
   * Why a new bitmap `name` of `granularity` cannot be stored (QEMU's
   * bdrv_co_can_store_new_dirty_bitmap, the driver's text), or undefined when it can.
   */
  bitmapRefusal(name: string, granularity: number): string | undefined
  /** Creates bitmap `name` (enabled, clean) at `index` of the image's list (the end by default). */
  addBitmap(name: string, granularity: number, index?: number): PersistentBitmap
  /** Deletes bitmap `name` from the image now (block-dirty-bitmap-remove). */
  removeBitmap(name: string): Promise<void>
}

/** True when `driver` stores persistent bitmaps. */
export function hasPersistentBitmaps(driver: FormatDriver): driver is FormatDriver & PersistentBitmaps {
  return hasMethods(driver, 'readBitmaps', 'loadedBitmaps', 'bitmapRefusal', 'addBitmap', 'removeBitmap')
}


/** bdrv_dirty_bitmap_check's message for an in-use bitmap, with its hint line. */
export function inconsistentError(name: string): ImageError {
  return new ImageError('INVALID_ARGUMENT', `Bitmap '${name}' is inconsistent and cannot be used\nTry block-dirty-bitmap-remove to delete this bitmap from disk`)
}
