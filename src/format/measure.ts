// qemu-img measure as a module capability (QEMU's bdrv_measure): the figures a new image of a
// format needs, from a virtual size or from a source image. A module without `measure` is a
// format QEMU cannot measure either ("Block driver '…' does not support size measurement").
import type { BlockDevice } from './device.js'

/** The figures qemu-img measure prints (BlockMeasureInfo). */
export interface MeasureResult {
  required: number
  fullyAllocated: number
  /** Bytes for persistent bitmaps; reported only when source and target support them. */
  bitmaps: number | undefined
}

/** What is measured: a virtual size (--size) or a source image. */
export type MeasureSource = { size: number } | { device: BlockDevice }

/** What `measure` hands a module. */
export interface FormatMeasureRequest {
  /** The -o options, validated against the module's createOptions. */
  options: ReadonlyMap<string, string>
  source: MeasureSource
  /** The --object secret with `id` as UTF-8 (an encrypted target formats its header in memory). */
  lookupSecret: (id: string) => Uint8Array
}

/** `value` rounded up to a multiple of `to`. */
export const roundUp = (value: number, to: number): number => Math.ceil(value / to) * to
