// A QCOW version 1 image as a format driver (block/qcow.c): reading data, compressed and
// AES-encrypted clusters, backing fall-through, and writes through the generic unit writer.
import type { Codecs, Compressors } from '../codecs.js'
import { ImageError, hex } from '../errors.js'
import type { BackingReference, GuestReader, WritableFormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import { layerInfo, type ImageInfo } from '../format/info.js'
import { UnitLocks, lockingUnits, writeUnits, type UnitAllocator, type UnitMap } from '../format/unit-writer.js'
import { writeZeroBuffers } from '../format/unit-split.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import type { SectorCipher } from '../crypto/sector-cipher.js'
import type { QcowGeometry } from './header.js'
import { L1Table, L2Cache, compressedEntry, decodeEntry, lookupCluster, readPadded } from './tables.js'

export interface QcowParts {
  storage: ReadableStorage
  geometry: QcowGeometry
  l1: L1Table
  backing: BackingReference | undefined
  encrypted: boolean
  cipher: SectorCipher | undefined
  codecs: Codecs | undefined
  compressors: Compressors | undefined
  writable: boolean
}

const alignUp = (n: number, to: number): number => Math.ceil(n / to) * to

export class QcowImage implements WritableFormatDriver {
  readonly format = 'qcow'
  readonly storage: ReadableStorage
  readonly virtualSize: number
  readonly backing: BackingReference | undefined
  readonly warnings: readonly string[] = []
  readonly clusterSize: number
  readonly writable: boolean
  readonly name: string
  readonly #g: QcowGeometry
  readonly #l1: L1Table
  readonly #cache: L2Cache
  readonly #encrypted: boolean
  readonly #cipher: SectorCipher | undefined
  readonly #codecs: Codecs | undefined
  readonly #compressors: Compressors | undefined
  readonly #locks = new UnitLocks()
  /** Pending L2 allocations by L1 index (two writes in one new table allocate it once). */
  readonly #l2Pending = new Map<number, Promise<number>>()
  /** The file's length as allocation sees it (bdrv_getlength), kept here so allocations never race. */
  #end: number | undefined
  #endRead: Promise<void> | undefined

  constructor(p: QcowParts) {
    this.storage = p.storage
    this.#g = p.geometry
    this.virtualSize = p.geometry.virtualSize
    this.clusterSize = p.geometry.clusterSize
    this.backing = p.backing
    this.#l1 = p.l1
    this.#cache = new L2Cache(p.storage, p.geometry)
    this.#encrypted = p.encrypted
    this.#cipher = p.cipher
    this.#codecs = p.codecs
    this.#compressors = p.compressors
    this.writable = p.writable
    this.name = p.storage.name
  }

  #unitAllocator: UnitAllocator | undefined
  #allocator(): UnitAllocator {
    if (this.#unitAllocator) return this.#unitAllocator
    const cs = this.#g.clusterSize
    const map: UnitMap = {
      // An encrypted cluster is rewritten whole where it is (sectors encrypted together).
      plan: async (unit) => {
        const entry = await this.#entry(unit)
        if (entry.kind !== 'data') return { kind: 'allocate' }
        return this.#encrypted ? { kind: 'rewrite', hostOffset: entry.offset, fill: 'guest', link: false } : { kind: 'inPlace', hostOffset: entry.offset }
      },
      allocateRun: async (unit) => ({ hostOffset: await this.#allocateCluster(unit), count: 1 }),
      writeData: async (hostOffset, bytes, guestOffset) => {
        // Encrypted writes are whole clusters (the plans above); sectors numbered by guest offset.
        const stored = this.#encrypted ? await this.#cipher!.encrypt(bytes, guestOffset / 512) : bytes
        await this.#writableStorage().write(hostOffset, stored)
      },
      linkRun: (unit, _count, hostOffset) => this.#setEntry(unit, BigInt(hostOffset)),
    }
    this.#unitAllocator = { unitSize: cs, virtualSize: this.virtualSize, name: this.name, padUnits: true, exclusive: lockingUnits(this.#locks, cs, map) }
    return this.#unitAllocator
  }

  #writableStorage(): Storage {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.name}: image is opened read-only`, { file: this.name })
    return this.storage as Storage
  }

  async #entry(cluster: number) {
    return decodeEntry(await lookupCluster(this.#l1, this.#cache, cluster), this.#g)
  }

  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const cs = this.#g.clusterSize
    const cluster = Math.floor(guestOffset / cs)
    const within = guestOffset - cluster * cs
    const length = Math.max(1, Math.min(maxLength, cs - within, this.virtualSize - guestOffset))
    const entry = await this.#entry(cluster)
    if (entry.kind === 'unallocated') return { kind: 'unallocated', length }
    // Compressed and encrypted clusters have no host offset a reader could use (qcow_co_block_status).
    if (entry.kind === 'compressed' || this.#encrypted) return { kind: 'compressed', length }
    if (entry.offset % 512 !== 0) {
      throw new ImageError('CORRUPT', `${this.name}: L2 entry of cluster ${cluster}: data offset ${hex(entry.offset)} is not a multiple of 512`, { file: this.name, offset: entry.offset })
    }
    return { kind: 'data', length, storage: this.storage, hostOffset: entry.offset + within }
  }

  async #decompress(cluster: number, offset: number, size: number): Promise<Uint8Array> {
    const inflate = this.#codecs?.deflate
    if (!inflate) throw new ImageError('UNSUPPORTED', `${this.name}: no deflate codec to read compressed clusters`, { file: this.name })
    const input = await readPadded(this.storage, offset, size)
    try {
      return await inflate(input, this.#g.clusterSize)
    } catch (cause) {
      throw new ImageError('CORRUPT', `${this.name}: compressed cluster ${cluster} at ${hex(offset)} (${size} bytes) does not inflate to ${this.#g.clusterSize} bytes: ${(cause as Error).message}`, { file: this.name, offset, cause })
    }
  }

  async readEncoded(guestOffset: number, length: number): Promise<Uint8Array> {
    const cs = this.#g.clusterSize
    const cluster = Math.floor(guestOffset / cs)
    const within = guestOffset - cluster * cs
    const entry = await this.#entry(cluster)
    if (entry.kind === 'compressed') return (await this.#decompress(cluster, entry.offset, entry.size)).slice(within, within + length)
    if (entry.kind === 'unallocated') return new Uint8Array(length)
    if (!this.#cipher) throw new ImageError('BAD_KEY', `${this.name}: encrypted data cannot be read without the key`, { file: this.name })
    // Whole sectors are decrypted, numbered by guest offset.
    const start = Math.floor(within / 512) * 512
    const end = Math.min(cs, Math.ceil((within + length) / 512) * 512)
    const plain = await this.#cipher.decrypt(await readPadded(this.storage, entry.offset + start, end - start), (cluster * cs + start) / 512)
    return plain.slice(within - start, within - start + length)
  }

  async consultHostHoles(): Promise<boolean> {
    return false
  }

  // ---- allocation ----

  /**
   * Reserves `length` bytes at the file's end, aligned to `align`. The end is read once and
   * then kept here; the reservation itself is synchronous, so concurrent allocations never overlap.
   */
  async #reserve(length: number, align: number): Promise<number> {
    this.#endRead ??= this.storage.size().then((size) => { this.#end ??= size })
    await this.#endRead
    const offset = alignUp(this.#end!, align)
    this.#end = offset + length
    return offset
  }

  async #l2For(guestUnit: number): Promise<number> {
    const index = Math.floor(guestUnit / this.#g.l2Size)
    let pending = this.#l2Pending.get(index)
    if (pending) return pending
    const existing = this.#l1.get(index)
    if (existing !== 0) return existing
    {
      pending = (async () => {
        const storage = this.#writableStorage()
        const bytes = this.#g.l2Size * 8
        const offset = await this.#reserve(bytes, this.#g.clusterSize)
        // QEMU's order: the L1 entry, then the zeroed table (get_cluster_offset).
        this.#cache.put(offset, new BigUint64Array(this.#g.l2Size))
        await this.#l1.set(storage, index, offset)
        await storage.write(offset, new Uint8Array(bytes))
        return offset
      })()
      this.#l2Pending.set(index, pending)
      pending.finally(() => this.#l2Pending.delete(index)).catch(() => undefined)
    }
    return pending
  }

  async #allocateCluster(guestUnit: number): Promise<number> {
    await this.#l2For(guestUnit)
    const cs = this.#g.clusterSize
    const offset = await this.#reserve(cs, cs)
    await this.#writableStorage().truncate(Math.max(await this.storage.size(), offset + cs))
    return offset
  }

  async #setEntry(guestUnit: number, value: bigint): Promise<void> {
    const l2Offset = await this.#l2For(guestUnit)
    const table = await this.#cache.get(l2Offset)
    const index = guestUnit % this.#g.l2Size
    table[index] = value
    const bytes = new Uint8Array(8)
    new DataView(bytes.buffer).setBigUint64(0, value)
    await this.#writableStorage().write(l2Offset + index * 8, bytes)
  }

  // ---- writes ----

  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    this.#writableStorage()
    if (this.#encrypted && !this.#cipher) throw new ImageError('BAD_KEY', `${this.name}: encrypted image opened without its key`, { file: this.name })
    const end = offset + data.length
    if (offset < 0 || end > this.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.name}: write of ${data.length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`)
    }
    // qcow_co_pwritev does no copy-on-write: a newly allocated cluster keeps zeros outside the
    // sectors written (a compressed cluster's old content is kept, as decompress_cluster does).
    const reader: GuestReader = async (at, length) => {
      const entry = await this.#entry(Math.floor(at / this.#g.clusterSize))
      if (entry.kind !== 'unallocated') return readGuest(at, length)
      const out = new Uint8Array(length)
      const from = Math.max(at, Math.floor(offset / 512) * 512)
      const to = Math.min(at + length, Math.ceil(end / 512) * 512)
      if (to > from) out.set(await readGuest(from, to - from), from - at)
      return out
    }
    // Cluster by cluster, in guest order, as qcow_co_pwritev's loop: each new cluster (and L2
    // table) is placed at the file's end in that order, so the layout is QEMU's.
    const cs = this.#g.clusterSize
    for (let at = offset; at < end;) {
      const pieceEnd = Math.min(end, (Math.floor(at / cs) + 1) * cs)
      await writeUnits(this.#allocator(), at, data.subarray(at - offset, pieceEnd - offset), reader)
      at = pieceEnd
    }
  }

  /** qcow has no zero write: QEMU's block layer writes zero buffers. */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader): Promise<void> {
    await writeZeroBuffers((at, zeros) => this.write(at, zeros, readGuest), offset, length, Math.max(this.#g.clusterSize, 1024 * 1024))
  }

  /** qcow has no discard: QEMU's block layer accepts it and changes nothing. */
  async discard(): Promise<void> {
    this.#writableStorage()
  }

  /** One whole cluster compressed (qcow_co_pwritev_compressed); stored plainly when not smaller. */
  async writeCompressed(offset: number, data: Uint8Array, readGuest: GuestReader, compressors?: Compressors, after?: Promise<unknown>): Promise<void> {
    const cs = this.#g.clusterSize
    if (offset % cs !== 0 || (data.length !== cs && offset + data.length !== this.virtualSize) || data.length > cs) {
      throw new ImageError('INVALID_ARGUMENT', `${this.name}: compressed writes must cover whole clusters (offset ${offset}, ${data.length} bytes)`)
    }
    const compress = (compressors ?? this.#compressors)?.deflate
    if (!compress) throw new ImageError('UNSUPPORTED', `${this.name}: no deflate compressor available`)
    // qemu-io 7.2 would store the cluster compressed and unencrypted; qimg refuses, as for qcow2.
    if (this.#encrypted) throw new ImageError('UNSUPPORTED', `${this.name}: Compression and encryption not supported at the same time`)
    let cluster = data
    if (data.length < cs) {
      cluster = new Uint8Array(cs)
      cluster.set(data)
    }
    const compressed = await compress(cluster, cs)
    await after
    if (!compressed) return this.write(offset, data, readGuest)
    const unit = offset / cs
    await this.#locks.with(unit, async () => {
      await this.#l2For(unit)
      // Compressed data goes at the file's end, unaligned.
      const host = await this.#reserve(compressed.length, 1)
      await this.#writableStorage().write(host, compressed)
      await this.#setEntry(unit, compressedEntry(host, compressed.length, this.#g))
    })
  }

  async flush(): Promise<void> {
    await this.#writableStorage().flush()
  }

  info(): Promise<ImageInfo> {
    return layerInfo(this, { encrypted: this.#encrypted ? true : undefined })
  }

  async close(): Promise<void> {
    await this.storage.close()
  }
}
