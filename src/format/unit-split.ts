// How the generic path splits guest requests: into regions (the driver's lock scope), zero
// writes into an unaligned head, an aligned bulk and an unaligned tail, and discards into the
// whole units they cover.

/** Calls `fn` for each piece of `[offset, offset+length)` split at multiples of `regionSize`, in order. */
export async function forEachRegion(offset: number, length: number, regionSize: number, fn: (start: number, end: number) => Promise<void>): Promise<void> {
  const end = offset + length
  for (let position = offset; position < end;) {
    const pieceEnd = Math.min(end, (Math.floor(position / regionSize) + 1) * regionSize)
    await fn(position, pieceEnd)
    position = pieceEnd
  }
}

/**
 * A zero write split as QEMU's block layer splits it (bdrv_co_do_pwrite_zeroes): an unaligned
 * head up to the next `granularity` boundary, the aligned bulk, an unaligned tail.
 */
export function* zeroPieces(offset: number, length: number, granularity: number): Generator<{ start: number; end: number }> {
  const end = offset + length
  for (let position = offset; position < end;) {
    let pieceEnd = end
    if (position % granularity !== 0) pieceEnd = Math.min(end, position - (position % granularity) + granularity)
    else if (end % granularity !== 0 && end - position > granularity) pieceEnd = end - (end % granularity)
    yield { start: position, end: pieceEnd }
    position = pieceEnd
  }
}

/**
 * The whole units a discard covers (qcow2_co_pdiscard's alignment): rounded inward, except that
 * a request reaching the guest's end covers the last, partial unit. Undefined when none.
 */
export function wholeUnits(offset: number, length: number, unitSize: number, virtualSize: number): { start: number; end: number } | undefined {
  const start = Math.ceil(offset / unitSize) * unitSize
  let end = Math.floor((offset + length) / unitSize) * unitSize
  if (offset + length === virtualSize) end = offset + length
  return end > start ? { start, end } : undefined
}

/**
 * Zeros written as data (formats without a zero flag, or where the flag cannot be used), in
 * pieces of at most `chunk` bytes (QEMU's MAX_BOUNCE_BUFFER is 16 MiB).
 */
export async function writeZeroBuffers(write: (offset: number, data: Uint8Array) => Promise<void>, offset: number, length: number, chunk: number): Promise<void> {
  const size = Math.min(length, chunk)
  const zeros = new Uint8Array(size)
  for (let at = offset; at < offset + length; at += size) await write(at, zeros.subarray(0, Math.min(size, offset + length - at)))
}
