// The plain model a write engine is checked against: the guest disk as one flat byte array, with
// the format's guest-visible semantics of writes, zero writes and discards.
//
// Discard semantics (what the guest reads afterwards), as QEMU behaves:
// * qcow2 discards whole clusters only: the part of the range covering complete clusters (plus
//   the partial last cluster when the range ends at the end of the image); partial clusters at
//   either edge are left untouched.
// * qcow2 v3: discarded clusters read as zeros (zero flag / all-zero subcluster bitmap), with
//   or without a backing file.
// * qcow2 v2 (no zero flag): without a backing file a discarded cluster becomes unallocated and
//   reads as zeros; over a backing file discard does nothing (qcow2_co_pdiscard refuses it, as
//   unallocating would show older data from the backing file).
// * raw: discard punches a hole, which reads as zeros.
// Zero writes always read back as zeros, whatever the format does underneath.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What discard means for the image under test. */
export type ModelFormat =
  | { kind: 'qcow2'; version: 2 | 3; clusterSize: number }
  | { kind: 'raw' }

/** One guest operation, replayable on an image and on the model. */
export type Op =
  | { op: 'write'; offset: number; length: number; seed: number }
  | { op: 'zero'; offset: number; length: number; unmap: boolean }
  | { op: 'discard'; offset: number; length: number }
  | { op: 'flush' }

/** Describes an op for failure messages. */
export function describeOp(o: Op): string {
  switch (o.op) {
    case 'write': return `write ${o.offset}+${o.length} (data seed ${o.seed})`
    case 'zero': return `zero${o.unmap ? ' -u' : ''} ${o.offset}+${o.length}`
    case 'discard': return `discard ${o.offset}+${o.length}`
    case 'flush': return 'flush'
  }
}

/** A guest disk as a flat array. */
export class DiskModel {
  readonly bytes: Uint8Array
  /** Guest view of the backing chain below the image (zeros past its end), if any. */
  readonly backing: Uint8Array | undefined

  constructor(readonly format: ModelFormat, size: number, options: { initial?: Uint8Array | undefined; backing?: Uint8Array | undefined } = {}) {
    this.bytes = new Uint8Array(size)
    if (options.backing) {
      this.backing = new Uint8Array(size)
      this.backing.set(options.backing.subarray(0, size))
    }
    const initial = options.initial ?? this.backing
    if (initial) this.bytes.set(initial.subarray(0, size))
  }

  get size(): number {
    return this.bytes.length
  }

  write(offset: number, data: Uint8Array): void {
    this.#check(offset, data.length)
    this.bytes.set(data, offset)
  }

  writeZeroes(offset: number, length: number): void {
    this.#check(offset, length)
    this.bytes.fill(0, offset, offset + length)
  }

  discard(offset: number, length: number): void {
    this.#check(offset, length)
    if (this.format.kind === 'raw') {
      this.bytes.fill(0, offset, offset + length)
      return
    }
    const { clusterSize: cs, version } = this.format
    const start = Math.ceil(offset / cs) * cs
    let end = Math.floor((offset + length) / cs) * cs
    if (offset + length === this.size) end = this.size
    if (end <= start) return
    if (version === 2 && this.backing) return
    this.bytes.fill(0, start, end)
  }

  /** Applies `o`; `data` regenerates a write's bytes from its seed. */
  apply(o: Op, data: (o: Extract<Op, { op: 'write' }>) => Uint8Array): void {
    switch (o.op) {
      case 'write': this.write(o.offset, data(o)); break
      case 'zero': this.writeZeroes(o.offset, o.length); break
      case 'discard': this.discard(o.offset, o.length); break
      case 'flush': break
    }
  }

  #check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new RangeError(`model: ${offset}+${length} outside ${this.size}`)
  }
}

/** Index of the first byte where `a` and `b` differ (−1 when equal, lengths included). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  const ba = Buffer.from(a.buffer, a.byteOffset, n)
  const bb = Buffer.from(b.buffer, b.byteOffset, n)
  if (ba.equals(bb)) return a.length === b.length ? -1 : n
  // Narrow down in native-compared blocks, then bytewise.
  let lo = 0
  const block = 4096
  while (lo + block < n && ba.subarray(lo, lo + block).equals(bb.subarray(lo, lo + block))) lo += block
  for (let i = lo; i < n; i++) if (a[i] !== b[i]) return i
  return n
}

/**
 * A scratch directory for model tests, removed by `cleanup`: in RAM (/dev/shm) when the host has
 * it, since the tests flush and delete many files and a busy disk would dominate their runtime.
 * QIMG_MODEL_TMP overrides the parent directory.
 */
export function scratchDir(prefix: string): { path: string; cleanup(): void } {
  const parent = process.env['QIMG_MODEL_TMP'] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
  const path = mkdtempSync(join(parent, prefix))
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) }
}
