// What a command needs from a driver beyond reading and writing: optional capabilities, each
// with a type guard, so a command works on every format that has it and says clearly when one
// has not (qemu-img's message). Drivers implement them as plain methods.
import type { FormatDriver } from './driver.js'

/** Preallocation modes of resize (qemu-img resize --preallocation). */
export type ResizePreallocation = 'off' | 'metadata' | 'falloc' | 'full'

/** A format that can change its virtual size (QEMU's bdrv_co_truncate). */
export interface Resizable {
  /**
   * Sets the virtual size to `newSize`. The generic checks (positive size, --shrink given,
   * preallocation only when growing) are made before; the driver makes its own format's checks
   * with QEMU's messages, and the new area reads as zeros.
   */
  resize(newSize: number, options: { preallocation: ResizePreallocation }): Promise<void>
}

/** True when `driver` can resize. */
export function canResize(driver: FormatDriver): driver is FormatDriver & Resizable {
  return typeof (driver as Partial<Resizable>).resize === 'function'
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
