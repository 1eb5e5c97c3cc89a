// Big-endian integer helpers over DataView; 64-bit values become numbers through one checked
// path (values above 2^53 are refused, which is 8 PiB: no real image gets there).
import { ImageError, hex } from '../errors.js'

/** The parts one after another in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0
  for (const p of parts) length += p.length
  const out = new Uint8Array(length)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** A DataView over exactly the bytes of `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Reads a big-endian u64 as a number; throws OUT_OF_RANGE above 2^53 - 1. */
export function getU64(view: DataView, offset: number, what = 'value'): number {
  const hi = view.getUint32(offset)
  const lo = view.getUint32(offset + 4)
  if (hi >= 0x20_0000) {
    throw new ImageError('OUT_OF_RANGE', `${what} 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} is above 2^53`)
  }
  return hi * 0x1_0000_0000 + lo
}

/** Reads a big-endian u64 that may be above 2^53 as a bigint (feature bit masks). */
export function getU64Big(view: DataView, offset: number): bigint {
  return view.getBigUint64(offset)
}

/** Writes a number as a big-endian u64. */
export function setU64(view: DataView, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new ImageError('OUT_OF_RANGE', `u64 value ${value} is not a safe non-negative integer`)
  view.setUint32(offset, Math.floor(value / 0x1_0000_0000))
  view.setUint32(offset + 4, value >>> 0)
}

/**
 * A buffer whose contents the caller overwrites completely. On Node this avoids zeroing (and,
 * for large sizes, fresh page faults on every allocation, which dominate copy loops);
 * elsewhere it is a plain Uint8Array.
 */
export function allocUninitialized(length: number): Uint8Array {
  // A plain Uint8Array over memory of its own (not a pooled Buffer): `.slice()` copies, `.buffer` starts at it.
  const nodeBuffer = (globalThis as { Buffer?: { allocUnsafeSlow(n: number): Uint8Array } }).Buffer
  return nodeBuffer ? new Uint8Array(nodeBuffer.allocUnsafeSlow(length).buffer, 0, length) : new Uint8Array(length)
}

/**
 * A long-lived buffer that (de)compression workers can read and write in place: shared memory
 * where the runtime has it (Node; browsers only when cross-origin isolated), else a plain one.
 */
export function allocShareable(length: number): Uint8Array {
  return typeof SharedArrayBuffer === 'function' ? new Uint8Array(new SharedArrayBuffer(length)) : new Uint8Array(length)
}

/** True when every byte of `bytes` is zero. */
export function isZero(bytes: Uint8Array): boolean {
  // Compare 4 bytes at a time where alignment allows; this runs over every byte convert reads.
  const len = bytes.length
  let i = 0
  if ((bytes.byteOffset & 3) === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, len >>> 2)
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false
    i = words.length << 2
  }
  for (; i < len; i++) if (bytes[i] !== 0) return false
  return true
}

/** Latin-1/UTF-8 text of a byte range (names stored in images). */
export function decodeText(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes)
}

/** Asserts `value` is a multiple of `alignment` (a power of two). */
export function isAligned(value: number, alignment: number): boolean {
  return value % alignment === 0
}

export { hex }
