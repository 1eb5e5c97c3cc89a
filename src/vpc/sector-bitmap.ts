// Sector bitmaps of a sparse VHD: one bit per sector of a block, most significant bit first
// (VHD specification, "Block Allocation Table and Data Blocks"), stored in the sectors before
// the block's data. Read on demand and kept in a small cache.
import type { ReadableStorage, Storage } from '../io/storage.js'
import { SECTOR_SIZE } from './footer.js'
import type { VpcSparse } from './open.js'

/** Bitmaps kept in memory at most (a 2 MiB block's is 512 bytes). */
const CACHED_BITMAPS = 256

export class SectorBitmaps {
  readonly #storage: ReadableStorage
  readonly #sparse: VpcSparse
  /** By BAT entry (the bitmap's sector). */
  readonly #cache = new Map<number, Uint8Array>()

  constructor(storage: ReadableStorage, sparse: VpcSparse) {
    this.#storage = storage
    this.#sparse = sparse
  }

  async #get(entry: number): Promise<Uint8Array> {
    let bitmap = this.#cache.get(entry)
    if (!bitmap) {
      bitmap = await this.#storage.read(entry * SECTOR_SIZE, this.#sparse.bitmapSize)
      if (this.#cache.size >= CACHED_BITMAPS) this.#cache.clear()
      this.#cache.set(entry, bitmap)
    }
    return bitmap
  }

  /** Whether every sector of the block is marked present. */
  async isFull(entry: number): Promise<boolean> {
    const sectors = this.#sparse.blockSize / SECTOR_SIZE
    const bitmap = await this.#get(entry)
    for (let s = 0; s < sectors; s += 8) if (bitmap[s >> 3] !== 0xff) return false
    return true
  }

  /**
   * From `within` (bytes into block `block`, stored at BAT entry `entry`), how far the sectors
   * keep the state of the first one: present (bit set) or not, at most `length` bytes.
   */
  async run(entry: number, within: number, length: number): Promise<{ present: boolean; length: number }> {
    const bitmap = await this.#get(entry)
    const bit = (sector: number) => (bitmap[sector >> 3]! >> (7 - (sector & 7))) & 1
    const first = Math.floor(within / SECTOR_SIZE)
    const state = bit(first)
    const end = within + length
    let at = (first + 1) * SECTOR_SIZE
    while (at < end && bit(at / SECTOR_SIZE) === state) at += SECTOR_SIZE
    return { present: state === 1, length: Math.min(at, end) - within }
  }

  /** Writes an all-ones bitmap at BAT entry `entry` (every sector this layer's). */
  async writeFull(out: Storage, entry: number): Promise<void> {
    if (this.#sparse.bitmapSize === 0) return
    const bitmap = new Uint8Array(this.#sparse.bitmapSize).fill(0xff)
    await out.write(entry * SECTOR_SIZE, bitmap)
    this.#cache.set(entry, bitmap)
  }
}
