// A hosted sparse extent (monolithicSparse, twoGbMaxExtentSparse, streamOptimized): the grain
// directory (QEMU's L1 table) read whole, grain tables (L2) read on demand and cached, grains
// allocated at the end of the file as QEMU's get_cluster_offset does. The redundant directory
// is kept up to date on writes but never read, as in QEMU.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import {
  decodeFooter, decodeHeader, HEADER_BYTES, SECTOR, VMDK4_COMPRESSION_DEFLATE, VMDK4_FLAG_MARKER, VMDK4_FLAG_RGD,
  VMDK4_FLAG_ZERO_GRAIN, VMDK4_GD_AT_END, VMDK_GTE_ZEROED, type Vmdk4Header,
} from './header.js'

/** QEMU's limits (vmdk_add_extent, vmdk_open_vmdk4). */
export const MAX_CLUSTER_SECTORS = 0x200000
export const MAX_L1_ENTRIES = 32 * 1024 * 1024
const MAX_GTES_PER_GT = 512
/** Grain sectors are 32-bit (VMDK_EXTENT_MAX_SECTORS). */
const EXTENT_MAX_SECTORS = 2 ** 32
/** Grain tables kept in memory per extent. */
const GT_CACHE_ENTRIES = 1024

/** Host bytes of a run of compressed grains fetched by one read (at most). */
const MAX_RUN_READ = 4 * 1024 * 1024

/** Where one grain lives. */
export type GrainLookup =
  | { kind: 'unallocated' | 'zero' }
  | { kind: 'data' | 'compressed'; hostOffset: number }

/** Bytes at `offset`, zero-filled past the end of the file as QEMU's file driver reads. */
export async function readPadded(storage: ReadableStorage, fileSize: number, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length)
  const available = Math.max(0, Math.min(length, fileSize - offset))
  if (available > 0) out.set(await storage.read(offset, available))
  return out
}

/** A sparse file's header, or the embedded descriptor it points to instead (capacity 0). */
export type SparseHead =
  | { kind: 'extent'; header: Vmdk4Header }
  | { kind: 'descriptor'; offset: number }

/** vmdk_open_vmdk4's first steps: the header, a descriptor instead, or the footer's header. */
export async function readSparseHead(storage: ReadableStorage, fileSize: number): Promise<SparseHead> {
  const file = storage.name
  let header = decodeHeader(await readPadded(storage, fileSize, 0, HEADER_BYTES))
  if (header.capacity === 0n && header.descOffset !== 0n) {
    const offset = header.descOffset * BigInt(SECTOR)
    if (offset >= BigInt(fileSize)) throw new ImageError('CORRUPT', `${file}: VMDK header descriptor offset ${header.descOffset} is past the end of the file`, { file, offset: 28 })
    return { kind: 'descriptor', offset: Number(offset) }
  }
  if (header.gdOffset === VMDK4_GD_AT_END) {
    // The footer's header wins: three sectors before the end (QEMU: file sectors × 512 − 1536).
    const at = Math.ceil(fileSize / SECTOR) * SECTOR - 3 * SECTOR
    if (at < 0) throw new ImageError('CORRUPT', `${file}: VMDK stream of ${fileSize} bytes has no room for a footer`, { file, qemuText: 'Failed to read footer' })
    header = decodeFooter(await readPadded(storage, fileSize, at, 3 * SECTOR), file, at)
  }
  return { kind: 'extent', header }
}

/** Options of {@link SparseExtent.open}. */
export interface SparseOpenOptions {
  writable: boolean
  fileSize: number
}

export class SparseExtent {
  readonly storage: ReadableStorage
  /** Guest sectors. */
  readonly sectors: number
  readonly clusterSectors: number
  readonly l2Size: number
  readonly l1EntrySectors: number
  readonly compressed: boolean
  readonly hasMarker: boolean
  readonly hasZeroGrain: boolean
  readonly version: number
  readonly #gd: Uint32Array
  readonly #rgd: Uint32Array | undefined
  /** Where new grains go, in sectors (QEMU's next_cluster_sector). */
  nextClusterSector: number
  readonly #tables = new Map<number, Uint32Array>()
  readonly #fileSize: { value: number }

  private constructor(storage: ReadableStorage, h: Vmdk4Header, geometry: { clusterSectors: number; l1EntrySectors: number; sectors: number }, gd: Uint32Array, rgd: Uint32Array | undefined, fileSize: number) {
    this.storage = storage
    this.sectors = geometry.sectors
    this.clusterSectors = geometry.clusterSectors
    this.l1EntrySectors = geometry.l1EntrySectors
    this.l2Size = h.numGtesPerGt
    this.compressed = h.compressAlgorithm === VMDK4_COMPRESSION_DEFLATE
    this.hasMarker = (h.flags & VMDK4_FLAG_MARKER) !== 0
    this.hasZeroGrain = (h.flags & VMDK4_FLAG_ZERO_GRAIN) !== 0
    this.version = h.version
    this.#gd = gd
    this.#rgd = rgd
    this.#fileSize = { value: fileSize }
    const fileSectors = Math.ceil(fileSize / SECTOR)
    this.nextClusterSector = Math.ceil(fileSectors / geometry.clusterSectors) * geometry.clusterSectors
  }

  /** vmdk_open_vmdk4 from the header on: QEMU's checks and messages, then the directories. */
  static async open(storage: ReadableStorage, h: Vmdk4Header, options: SparseOpenOptions): Promise<SparseExtent> {
    const file = storage.name
    const fail = (code: 'UNSUPPORTED' | 'CORRUPT' | 'READ_ONLY', message: string, qemuText: string, offset?: number) =>
      new ImageError(code, `${file}: ${message}`, { file, qemuText, ...(offset === undefined ? {} : { offset }) })
    const compressed = h.compressAlgorithm === VMDK4_COMPRESSION_DEFLATE
    if (h.version > 3) throw fail('UNSUPPORTED', `VMDK header version ${h.version} is above 3`, `Unsupported VMDK version ${h.version}`, 4)
    if (h.version === 3 && options.writable && !compressed) throw fail('READ_ONLY', 'VMDK version 3 (changed block tracking) opens read-only', 'VMDK version 3 must be read only', 4)
    if (h.numGtesPerGt > MAX_GTES_PER_GT) throw fail('UNSUPPORTED', `VMDK header: ${h.numGtesPerGt} entries per grain table, more than ${MAX_GTES_PER_GT}`, 'L2 table size too big', 44)
    // uint32_t arithmetic, as QEMU computes it.
    const l1EntrySectors = Number((BigInt(h.numGtesPerGt) * h.granularity) & 0xffffffffn)
    if (l1EntrySectors === 0) throw fail('CORRUPT', 'VMDK header: a grain table covers no sectors', 'L1 entry size is invalid', 20)
    const l1Size = Number(((h.capacity + BigInt(l1EntrySectors) - 1n) / BigInt(l1EntrySectors)) & 0xffffffffn)
    const fileSectors = Math.ceil(options.fileSize / SECTOR)
    if (BigInt(fileSectors) < h.grainOffset) {
      const bytes = BigInt.asIntN(64, h.grainOffset * 512n)
      throw fail('CORRUPT', `VMDK header: grains start at sector ${h.grainOffset}, beyond the file's ${fileSectors} sectors`, `File truncated, expecting at least ${bytes} bytes`, 64)
    }
    if (h.granularity > BigInt(MAX_CLUSTER_SECTORS)) throw fail('CORRUPT', `VMDK header: grains of ${h.granularity} sectors`, 'Invalid granularity, image may be corrupt', 20)
    if (l1Size > MAX_L1_ENTRIES) throw fail('CORRUPT', `VMDK header: ${l1Size} grain directory entries`, 'L1 size too big', 12)
    const limit = BigInt(Number.MAX_SAFE_INTEGER) / 512n
    if (h.capacity > limit) throw fail('CORRUPT', `VMDK header: capacity ${h.capacity} sectors is beyond what qimg addresses`, 'Invalid argument', 12)
    return SparseExtent.load(storage, h, l1Size, options)
  }

  /**
   * vmdk_add_extent and vmdk_init_tables for a header already checked (a VMDK4 header, or a
   * COWD header put in its terms): the grain directory of `l1Size` 32-bit entries read whole,
   * and the redundant one when the header names it.
   */
  static async load(storage: ReadableStorage, h: Vmdk4Header, l1Size: number, options: SparseOpenOptions): Promise<SparseExtent> {
    const file = storage.name
    const readDirectory = async (sectorOffset: bigint, what: string): Promise<Uint32Array> => {
      const offset = sectorOffset * BigInt(SECTOR)
      const bytes = l1Size * 4
      // A directory must lie in the file: its size is then bounded by the file's.
      if (offset + BigInt(bytes) > BigInt(options.fileSize)) {
        throw new ImageError('CORRUPT', `${file}: VMDK ${what} at sector ${sectorOffset} (${l1Size} entries) is outside the file (${options.fileSize} bytes)`, { file, offset: 56, qemuText: `Could not read l1 table from extent '${file}': Invalid argument` })
      }
      const raw = bytes > 0 ? await storage.read(Number(offset), bytes) : new Uint8Array(0)
      const view = new DataView(raw.buffer, raw.byteOffset, raw.length)
      const table = new Uint32Array(l1Size)
      for (let i = 0; i < l1Size; i++) table[i] = view.getUint32(i * 4, true)
      return table
    }
    const l1EntrySectors = Number((BigInt(h.numGtesPerGt) * h.granularity) & 0xffffffffn)
    const gd = await readDirectory(h.gdOffset, 'grain directory')
    const rgd = (h.flags & VMDK4_FLAG_RGD) !== 0 && h.rgdOffset !== 0n ? await readDirectory(h.rgdOffset, 'redundant grain directory') : undefined
    return new SparseExtent(storage, h, { clusterSectors: Number(h.granularity), l1EntrySectors, sectors: Number(h.capacity) }, gd, rgd, options.fileSize)
  }

  get grainBytes(): number {
    return this.clusterSectors * SECTOR
  }

  /** The grain table at sector `gtSector`, from the cache or the file. */
  async #table(gtSector: number): Promise<Uint32Array> {
    const cached = this.#tables.get(gtSector)
    if (cached) return cached
    const file = this.storage.name
    const offset = gtSector * SECTOR
    const bytes = this.l2Size * 4
    if (offset + bytes > this.#fileSize.value) {
      throw new ImageError('CORRUPT', `${file}: VMDK grain table at ${hex(offset)} (${bytes} bytes) is outside the file (${this.#fileSize.value} bytes)`, { file, offset, qemuText: 'Input/output error' })
    }
    const raw = await this.storage.read(offset, bytes)
    const view = new DataView(raw.buffer, raw.byteOffset, raw.length)
    const table = new Uint32Array(this.l2Size)
    for (let i = 0; i < table.length; i++) table[i] = view.getUint32(i * 4, true)
    if (this.#tables.size >= GT_CACHE_ENTRIES) this.#tables.clear()
    this.#tables.set(gtSector, table)
    return table
  }

  #indexes(grainIndex: number): { l1Index: number; l2Index: number } {
    const sector = grainIndex * this.clusterSectors
    const l1Index = Math.floor(sector / this.l1EntrySectors)
    if (l1Index >= this.#gd.length) {
      const file = this.storage.name
      throw new ImageError('CORRUPT', `${file}: VMDK grain ${grainIndex} is beyond the grain directory's ${this.#gd.length} entries`, { file, qemuText: 'Input/output error' })
    }
    return { l1Index, l2Index: grainIndex % this.l2Size }
  }

  /** get_cluster_offset without allocation: where grain `grainIndex` of this extent lives. */
  async lookup(grainIndex: number): Promise<GrainLookup> {
    const { l1Index, l2Index } = this.#indexes(grainIndex)
    const gtSector = this.#gd[l1Index]!
    if (gtSector === 0) return { kind: 'unallocated' }
    const entry = (await this.#table(gtSector))[l2Index]!
    if (this.hasZeroGrain && entry === VMDK_GTE_ZEROED) return { kind: 'zero' }
    if (entry === 0) return { kind: 'unallocated' }
    return { kind: this.compressed ? 'compressed' : 'data', hostOffset: entry * SECTOR }
  }

  /**
   * vmdk_read_extent for a compressed grain: the marker (LBA, size) and the zlib stream after
   * it, or a stream filling the grain when the extent has no markers.
   */
  async compressedStream(hostOffset: number): Promise<Uint8Array> {
    const file = this.storage.name
    const grainBytes = this.grainBytes
    const window = await readPadded(this.storage, this.#fileSize.value, hostOffset, Math.min(2 * grainBytes, Math.max(0, this.#fileSize.value - hostOffset)))
    if (this.hasMarker && window.length < 12) throw new ImageError('CORRUPT', `${file}: VMDK grain marker at ${hex(hostOffset)} is cut off by the end of the file`, { file, offset: hostOffset, qemuText: 'Invalid argument' })
    const { length, stream } = this.hasMarker ? this.#markedStream(window, 0) : { length: grainBytes, stream: window.length >= grainBytes ? window.subarray(0, grainBytes) : undefined }
    if (!stream) {
      throw new ImageError('CORRUPT', `${file}: VMDK compressed grain at ${hex(hostOffset)}: ${length} bytes do not fit in the file or two grains`, { file, offset: hostOffset, qemuText: 'Invalid argument' })
    }
    return stream
  }

  /**
   * The zlib stream behind the 12-byte grain marker at `at` in `bytes` (lba, then its size at
   * byte 8): undefined when the size is 0, over two grains, or past what `bytes` holds.
   */
  #markedStream(bytes: Uint8Array, at: number): { length: number; stream: Uint8Array | undefined } {
    const length = new DataView(bytes.buffer, bytes.byteOffset + at, 12).getUint32(8, true)
    const fits = length > 0 && length <= 2 * this.grainBytes && at + 12 + length <= bytes.length
    return { length, stream: fits ? bytes.subarray(at + 12, at + 12 + length) : undefined }
  }

  /**
   * The zlib streams of compressed grains written one after another (a streamOptimized run,
   * hostOffsets in guest order): fetched with one host read per MAX_RUN_READ bytes instead of
   * one per grain. A grain's stream ends before the next grain's marker; the last one's before
   * `end` (the next grain on the host, when known) or within two grains. A grain out of host
   * order, or a stream the read does not hold whole, is read alone (compressedStream).
   */
  async compressedStreams(hostOffsets: readonly number[], end: number | undefined): Promise<Uint8Array[]> {
    if (!this.hasMarker) return Promise.all(hostOffsets.map((h) => this.compressedStream(h)))
    const fileSize = this.#fileSize.value
    const window = (h: number) => Math.min(fileSize, h + 12 + 2 * this.grainBytes)
    const out: Promise<Uint8Array>[] = []
    for (let i = 0; i < hostOffsets.length;) {
      const head = hostOffsets[i]!
      let j = i + 1
      while (j < hostOffsets.length && hostOffsets[j]! > hostOffsets[j - 1]! && hostOffsets[j]! - head <= MAX_RUN_READ - SECTOR) j++
      const after = j < hostOffsets.length ? hostOffsets[j] : end
      const last = hostOffsets[j - 1]!
      const readEnd = Math.min(head + MAX_RUN_READ, after !== undefined && after > last ? Math.min(after, window(last)) : window(last))
      if (readEnd <= head) {
        for (let k = i; k < j; k++) out.push(this.compressedStream(hostOffsets[k]!))
        i = j
        continue
      }
      this.storage.debugEvent?.('read_compressed')
      const bytes = this.storage.read(head, readEnd - head)
      for (let k = i; k < j; k++) {
        const at = hostOffsets[k]! - head
        out.push(bytes.then((b) => {
          const stream = at + 12 <= b.length ? this.#markedStream(b, at).stream : undefined
          return stream ?? this.compressedStream(head + at)
        }))
      }
      i = j
    }
    return Promise.all(out)
  }

  /** The file grew (a write past its end). */
  noteFileEnd(end: number): void {
    if (end > this.#fileSize.value) this.#fileSize.value = end
  }

  get fileSize(): number {
    return this.#fileSize.value
  }

  /** Whether the grain's table exists (QEMU allocates grains only inside existing tables). */
  hasTable(grainIndex: number): boolean {
    return this.#gd[this.#indexes(grainIndex).l1Index] !== 0
  }

  /** Reserves a new grain at next_cluster_sector, in sectors. */
  reserveGrain(): number {
    if (this.nextClusterSector >= EXTENT_MAX_SECTORS) {
      const file = this.storage.name
      throw new ImageError('UNSUPPORTED', `${file}: VMDK extent is full (grains are addressed by 32-bit sector numbers)`, { file, qemuText: 'Invalid argument' })
    }
    const sector = this.nextClusterSector
    this.nextClusterSector += this.clusterSectors
    return sector
  }

  /**
   * vmdk_L2update: the entry in the grain table, then in the redundant one, then a flush; the
   * cached table last.
   */
  async setEntry(grainIndex: number, value: number): Promise<void> {
    const out = this.storage as Storage
    const { l1Index, l2Index } = this.#indexes(grainIndex)
    const gtSector = this.#gd[l1Index]!
    const table = await this.#table(gtSector)
    const bytes = new Uint8Array(4)
    new DataView(bytes.buffer).setUint32(0, value, true)
    await out.write(gtSector * SECTOR + l2Index * 4, bytes)
    const backup = this.#rgd?.[l1Index]
    if (backup) {
      await out.write(backup * SECTOR + l2Index * 4, bytes)
      this.#tables.delete(backup)
    }
    await out.flush()
    table[l2Index] = value
  }
}
