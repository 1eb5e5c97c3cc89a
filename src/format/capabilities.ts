// What a command needs from a driver beyond reading and writing: optional capabilities, each
// with a type guard, so a command works on every format that has it and says clearly when one
// has not (qemu-img's message). Drivers implement them as plain methods.
import type { Compressors } from '../codecs.js'
import type { FormatDriver, GuestReader } from './driver.js'

/** True when `driver` has a method for every one of `names`. */
export function hasMethods(driver: FormatDriver, ...names: string[]): boolean {
  const methods = driver as unknown as Record<string, unknown>
  return names.every((n) => typeof methods[n] === 'function')
}

/** Preallocation modes of resize (qemu-img resize --preallocation). */
export type ResizePreallocation = 'off' | 'metadata' | 'falloc' | 'full'

/** What a resizing driver gets besides the size. */
export interface ResizeRequest {
  preallocation: ResizePreallocation
  /**
   * Makes a guest range read as zeros through the whole device (copy-on-write from the backing
   * chain included), as a guest write would: a shrink clears the kept part of its last cluster.
   */
  writeZeroes: (offset: number, length: number) => Promise<void>
}

/** A format that can change its virtual size (QEMU's bdrv_co_truncate). */
export interface Resizable {
  /**
   * Sets the virtual size to `newSize`. The generic checks (positive size, --shrink given,
   * preallocation only when growing) are made before; the driver makes its own format's checks
   * with QEMU's messages, and the new area reads as zeros.
   */
  resize(newSize: number, options: ResizeRequest): Promise<void>
}

/** True when `driver` can resize. */
export function canResize(driver: FormatDriver): driver is FormatDriver & Resizable {
  return hasMethods(driver, 'resize')
}

/** A format that records its backing file and can change it (rebase, commit). */
export interface SetBacking {
  /** Records `name` (undefined: none) and its format as the backing file. */
  setBacking(name: string | undefined, format: string | undefined): Promise<void>
  /** The unit the image allocates in on a write (qcow2's subcluster): safe rebase compares and copies in it. */
  readonly allocationUnit: number
}

/** True when `driver` can change its backing file. */
export function canSetBacking(driver: FormatDriver): driver is FormatDriver & SetBacking {
  return hasMethods(driver, 'setBacking') && typeof (driver as Partial<SetBacking>).allocationUnit === 'number'
}

/** A format that can be emptied after a commit (QEMU's bdrv_make_empty). */
export interface MakeEmpty {
  /** Deallocates every guest range, so reads go to the backing file again, and gives the space back. */
  makeEmpty(): Promise<void>
}

/** True when `driver` can be emptied. */
export function canMakeEmpty(driver: FormatDriver): driver is FormatDriver & MakeEmpty {
  return hasMethods(driver, 'makeEmpty')
}

/** Internal snapshots (qemu-img snapshot -c/-a/-d); `key` is an ID or a name. */
export interface Snapshots {
  createSnapshot(name: string): Promise<unknown>
  applySnapshot(key: string): Promise<void>
  deleteSnapshot(key: string): Promise<void>
}

/** True when `driver` has internal snapshots. */
export function hasSnapshots(driver: FormatDriver): driver is FormatDriver & Snapshots {
  return hasMethods(driver, 'createSnapshot', 'applySnapshot', 'deleteSnapshot')
}

/** A VM state area beside the disk (savevm data; qemu-io's -s, bdrv_get_info's vm_state_offset). */
export interface VmState {
  /** Writes VM state at `pos` of the area; `readGuest` gives the chain's content for copy-on-write. */
  saveVmState(pos: number, data: Uint8Array, readGuest: GuestReader): Promise<void>
  /** Reads VM state at `pos` with `read` (the chain's reader). */
  loadVmState(pos: number, length: number, read: GuestReader): Promise<Uint8Array>
  /** Where the area starts in the guest address space. */
  vmStateOffset(): number
}

/** True when `driver` has a VM state area. */
export function hasVmState(driver: FormatDriver): driver is FormatDriver & VmState {
  return hasMethods(driver, 'saveVmState', 'loadVmState', 'vmStateOffset')
}

/** Whole-cluster compressed writes (convert -c, qemu-io write -c). */
export interface CompressedWrites {
  /**
   * Writes whole clusters compressed; `compressors` default to the driver's own, and the write
   * waits for `after` once compressed (so a caller keeps its allocation order).
   */
  writeCompressed(offset: number, data: Uint8Array, readGuest: GuestReader, compressors?: Compressors, after?: Promise<unknown>): Promise<void>
}

/** True when `driver` takes compressed writes. */
export function hasCompressedWrites(driver: FormatDriver): driver is FormatDriver & CompressedWrites {
  return hasMethods(driver, 'writeCompressed')
}

/** What `check` reports (qemu-img's ImageCheck; counts in clusters of the format's unit). */
export interface CheckReport {
  checkErrors: number
  corruptions: number
  leaks: number
  corruptionsFixed: number
  leaksFixed: number
  totalClusters: number
  allocatedClusters: number
  fragmentedClusters: number
  compressedClusters: number
  /** 0 when the format does not report it. */
  imageEndOffset: number
  /** Set when the check could not complete (qemu-img: "Check failed: …"). */
  failed?: string
}
