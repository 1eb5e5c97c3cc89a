// QCOW L1 and L2 tables: reads bounded by the file (what lies past its end reads as zeros, as
// QEMU's file protocol answers), an L2 cache, and decoding of entries (bit 63 compressed, the
// compressed size in bits 63-cluster_bits..62, the offset below).
import type { ReadableStorage, Storage } from '../io/storage.js'
import type { QcowGeometry } from './header.js'

/** Reads `length` bytes at `offset`; bytes past the end of the file read as zeros. */
export async function readPadded(storage: ReadableStorage, offset: number, length: number): Promise<Uint8Array> {
  const size = await storage.size()
  const out = new Uint8Array(length)
  if (offset >= size || length === 0) return out
  out.set(await storage.read(offset, Math.min(length, size - offset)))
  return out
}

/** One decoded L2 entry. */
export type ClusterEntry =
  | { kind: 'unallocated' }
  | { kind: 'data'; offset: number }
  | { kind: 'compressed'; offset: number; size: number; raw: bigint }

const COMPRESSED = 1n << 63n

export function decodeEntry(entry: bigint, g: QcowGeometry): ClusterEntry {
  if (entry === 0n) return { kind: 'unallocated' }
  if ((entry & COMPRESSED) !== 0n) {
    const sizeShift = BigInt(63 - g.clusterBits)
    const size = Number((entry >> sizeShift) & BigInt(g.clusterSize - 1))
    return { kind: 'compressed', offset: Number(entry & ((1n << sizeShift) - 1n)), size, raw: entry }
  }
  return { kind: 'data', offset: Number(entry) }
}

export function compressedEntry(offset: number, size: number, g: QcowGeometry): bigint {
  return COMPRESSED | (BigInt(size) << BigInt(63 - g.clusterBits)) | BigInt(offset)
}

/** The L1 table: the part inside the file read at open, the rest zeros, updates kept. */
export class L1Table {
  readonly #loaded: DataView
  readonly #updated = new Map<number, number>()
  constructor(readonly offset: number, readonly size: number, loaded: Uint8Array) {
    this.#loaded = new DataView(loaded.buffer, loaded.byteOffset, loaded.length)
  }

  static async load(storage: ReadableStorage, offset: number, size: number): Promise<L1Table> {
    const fileSize = await storage.size()
    // Never more than the file holds: a hostile header cannot make qimg allocate its L1 size.
    const inFile = Math.max(0, Math.min(size * 8, fileSize - offset))
    const bytes = inFile > 0 ? await storage.read(offset, inFile - (inFile % 8)) : new Uint8Array(0)
    return new L1Table(offset, size, bytes)
  }

  get(index: number): number {
    const updated = this.#updated.get(index)
    if (updated !== undefined) return updated
    if ((index + 1) * 8 > this.#loaded.byteLength) return 0
    return Number(this.#loaded.getBigUint64(index * 8))
  }

  async set(storage: Storage, index: number, value: number): Promise<void> {
    const bytes = new Uint8Array(8)
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value))
    await storage.write(this.offset + index * 8, bytes)
    this.#updated.set(index, value)
  }
}

/** L2 tables by host offset (QEMU keeps 16; qimg keeps a few more). */
export class L2Cache {
  readonly #tables = new Map<number, BigUint64Array>()
  constructor(readonly storage: ReadableStorage, readonly g: QcowGeometry, readonly capacity = 64) {}

  async get(offset: number): Promise<BigUint64Array> {
    const hit = this.#tables.get(offset)
    if (hit) {
      this.#tables.delete(offset)
      this.#tables.set(offset, hit)
      return hit
    }
    const bytes = await readPadded(this.storage, offset, this.g.l2Size * 8)
    const view = new DataView(bytes.buffer)
    const table = new BigUint64Array(this.g.l2Size)
    for (let i = 0; i < table.length; i++) table[i] = view.getBigUint64(i * 8)
    this.put(offset, table)
    return table
  }

  put(offset: number, table: BigUint64Array): void {
    this.#tables.set(offset, table)
    if (this.#tables.size > this.capacity) this.#tables.delete(this.#tables.keys().next().value!)
  }
}

/** The entry of guest cluster `cluster`. */
export async function lookupCluster(l1: L1Table, cache: L2Cache, cluster: number): Promise<bigint> {
  const g = cache.g
  const l2Offset = l1.get(Math.floor(cluster / g.l2Size))
  if (l2Offset === 0) return 0n
  const table = await cache.get(l2Offset)
  return table[cluster % g.l2Size]!
}
