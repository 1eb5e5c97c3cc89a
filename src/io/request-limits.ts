// How QEMU's block layer splits a zero write or a discard by a node's limits (block/io.c,
// bdrv_co_do_pwrite_zeroes and bdrv_co_pdiscard), for blkdebug's align/opt-*/max-* options:
// small head and tail pieces up to the preferred alignment, an aligned bulk in pieces of at most
// the maximum.

/** A node's request limits (BlockLimits); 0 means none. */
export interface RequestLimits {
  /** request_alignment (blkdebug's align; at least 1). */
  requestAlignment: number
  /** max_transfer (blkdebug's max-transfer). */
  maxTransfer: number
  /** pwrite_zeroes_alignment and max_pwrite_zeroes (opt-write-zero, max-write-zero). */
  writeZeroesAlignment: number
  maxWriteZeroes: number
  /** pdiscard_alignment and max_pdiscard (opt-discard, max-discard). */
  discardAlignment: number
  maxDiscard: number
}

/** One piece of a split request; `small`: shorter than the preferred alignment. */
export interface RequestPiece {
  offset: number
  length: number
  small: boolean
}

/** MAX_BOUNCE_BUFFER of block/io.c: the largest zero buffer a fallback writes at once. */
export const MAX_BOUNCE_BYTES = 32768 * 512

const MAX_REQUEST = 2 ** 31 - 512 // BDRV_REQUEST_MAX_BYTES

/**
 * bdrv_co_do_pwrite_zeroes' loop: pieces the driver is offered. A `small` piece is one blkdebug
 * refuses (-ENOTSUP), so the block layer writes zeros there instead, at most max_transfer (or
 * MAX_BOUNCE_BYTES) at a time.
 */
export function writeZeroesPieces(offset: number, length: number, limits: RequestLimits): RequestPiece[] {
  const alignment = Math.max(limits.writeZeroesAlignment, limits.requestAlignment)
  const maxTransfer = limits.maxTransfer || MAX_BOUNCE_BYTES
  const maxWriteZeroes = Math.floor((limits.maxWriteZeroes || MAX_REQUEST) / alignment) * alignment
  let head = offset % alignment
  const tail = (offset + length) % alignment
  return split(offset, length, (left) => {
    let num = left
    if (head) {
      num = Math.min(left, maxTransfer, alignment - head)
      head = (head + num) % alignment
    } else if (tail && num > alignment) {
      num -= tail
    }
    return Math.min(num, maxWriteZeroes)
  }, alignment)
}

/** Cuts `length` bytes at `offset` into pieces of `next(bytes left)` bytes each. */
function split(offset: number, length: number, next: (left: number) => number, smallBelow: number): RequestPiece[] {
  const pieces: RequestPiece[] = []
  for (let at = offset, left = length; left > 0;) {
    const num = next(left)
    pieces.push({ offset: at, length: num, small: num < smallBelow })
    at += num
    left -= num
  }
  return pieces
}

/**
 * bdrv_co_pdiscard's loop: small requests up to alignment boundaries (each a whole number of
 * request_alignment units where it can be), the aligned bulk in pieces of at most max_pdiscard.
 * A `small` piece is shorter than request_alignment (blkdebug ignores those).
 */
export function discardPieces(offset: number, length: number, limits: RequestLimits): RequestPiece[] {
  const requestAlignment = limits.requestAlignment
  const align = Math.max(limits.discardAlignment, requestAlignment)
  const maxDiscard = Math.floor(Math.min(limits.maxDiscard || MAX_REQUEST, MAX_REQUEST) / align) * align || align
  let head = offset % align
  let tail = (offset + length) % align
  return split(offset, length, (left) => {
    let num = left
    if (head) {
      num = Math.min(left, align - head)
      if (num % requestAlignment !== 0) num %= requestAlignment
      head = (head + num) % align
    } else if (tail) {
      if (num > align) {
        num -= tail
      } else if (tail % requestAlignment !== 0 && tail > requestAlignment) {
        tail %= requestAlignment
        num -= tail
      }
    }
    return Math.min(num, maxDiscard)
  }, requestAlignment)
}
