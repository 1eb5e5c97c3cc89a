// What a format driver answers for a guest range: where its bytes live in this layer.
import type { ReadableStorage } from '../io/storage.js'

/**
 * One run of guest bytes with the same answer.
 * - `data`: bytes at `hostOffset` in `storage` (the image file or an external data file).
 * - `zero`: reads as zeros in this layer (zero flag); `hostOffset` is set when space is preallocated.
 * - `unallocated`: not in this layer: read the backing file, or zeros without one.
 * - `compressed`: stored compressed (or otherwise encoded); the driver decodes it with `readEncoded`.
 */
export type Extent =
  | { kind: 'data'; length: number; storage: ReadableStorage; hostOffset: number }
  | { kind: 'zero'; length: number; hostOffset: number | undefined }
  | { kind: 'unallocated'; length: number; hostOffset?: number } // hostOffset: space reserved (extended L2)
  | { kind: 'compressed'; length: number }
