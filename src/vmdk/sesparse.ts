// An ESXi seSparse extent, read-only as QEMU 7.2 reads it (vmdk_open_se_sparse and the
// sesparse branches of get_cluster_offset; the format has no public spec, so QEMU's strict
// checks are the rules): a 512-byte const header and a volatile header, a grain directory of
// 64-bit entries, grain tables of 4096 64-bit entries (64 sectors), grains of 8 sectors.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { SECTOR } from './header.js'
import { MAX_L1_ENTRIES, readPadded, type GrainLookup } from './sparse.js'

const CONST_MAGIC = 0xcafebabe
const VOLATILE_MAGIC = 0xcafecafe
/** The only values QEMU accepts (check_se_sparse_const_header). */
const GRAIN_SECTORS = 8
const GT_SECTORS = 64
const GTES_PER_GT = (GT_SECTORS * SECTOR) / 8
/** Grain tables kept in memory (32 KiB each). */
const GT_CACHE_ENTRIES = 256
/** Sector numbers qimg addresses exactly. */
const MAX_SECTOR = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR)

/** A u64 field as hex the way QEMU prints it (0x%016PRIx64). */
function hex16(hi: number, lo: number): string {
  return '0x' + hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0')
}

/** The u64 at `at` of `view` as a number, or Infinity when it is beyond 2^53. */
function u64(view: DataView, at: number): number {
  const hi = view.getUint32(at + 4, true)
  return hi >= 0x200000 ? Infinity : hi * 2 ** 32 + view.getUint32(at, true)
}

/** A grain table entry (get_cluster_offset's sesparse switch), from its two 32-bit halves. */
export type SeSparseEntry = { kind: 'unallocated' | 'zero' | 'invalid' } | { kind: 'data'; cluster: number }

/** Decodes a grain table entry: nibble 0 unallocated (only as 0), 1 unmapped and 2 zero, 3 a grain. */
export function decodeSeSparseEntry(hi: number, lo: number): SeSparseEntry {
  switch (hi >>> 28) {
    case 0: return hi === 0 && lo === 0 ? { kind: 'unallocated' } : { kind: 'invalid' }
    case 1: case 2: return { kind: 'zero' }
    // Bits 48–59 are the cluster index's low 12 bits, bits 0–47 the rest.
    case 3: return { kind: 'data', cluster: ((hi >>> 16) & 0xfff) + ((hi & 0xffff) * 2 ** 32 + lo) * 4096 }
    default: return { kind: 'invalid' }
  }
}

export class SeSparseExtent {
  readonly storage: ReadableStorage
  readonly sectors: number
  readonly clusterSectors = GRAIN_SECTORS
  readonly compressed = false
  readonly #fileSize: number
  /** Grain directory entries as (lo, hi) pairs. */
  readonly #gd: Uint32Array
  readonly #tablesSector: number
  readonly #grainsSector: number
  readonly #tables = new Map<number, Uint32Array>()

  private constructor(storage: ReadableStorage, sectors: number, gd: Uint32Array, tablesSector: number, grainsSector: number, fileSize: number) {
    this.storage = storage
    this.sectors = sectors
    this.#gd = gd
    this.#tablesSector = tablesSector
    this.#grainsSector = grainsSector
    this.#fileSize = fileSize
  }

  get grainBytes(): number {
    return GRAIN_SECTORS * SECTOR
  }

  /** vmdk_open_se_sparse: read-only, both headers checked as QEMU checks them, the directory read whole. */
  static async open(storage: ReadableStorage, options: { writable: boolean; fileSize: number }): Promise<SeSparseExtent> {
    const file = storage.name
    const fail = (code: 'UNSUPPORTED' | 'CORRUPT', message: string, qemuText: string, offset: number) =>
      new ImageError(code, `${file}: VMDK seSparse ${message}`, { file, offset, qemuText })
    if (options.writable) {
      throw new ImageError('READ_ONLY', `${file}: VMDK seSparse extents open read-only (qimg, as QEMU, does not write them)`, { file, qemuText: 'No write support for seSparse images available' })
    }
    const head = await readPadded(storage, options.fileSize, 0, SECTOR)
    const c = new DataView(head.buffer, head.byteOffset, SECTOR)
    const word = (i: number): [number, number] => [c.getUint32(8 * i + 4, true), c.getUint32(8 * i, true)]
    const is = (i: number, hi: number, lo: number) => word(i)[0] === hi && word(i)[1] === lo
    if (!is(0, 0, CONST_MAGIC)) throw fail('CORRUPT', `const header magic ${hex16(...word(0))}`, `Bad const header magic: ${hex16(...word(0))}`, 0)
    if (!is(1, 2, 1)) throw fail('UNSUPPORTED', `const header version ${hex16(...word(1))}`, `Unsupported version: ${hex16(...word(1))}`, 8)
    const decimal = (i: number) => (BigInt(word(i)[0]) << 32n | BigInt(word(i)[1])).toString()
    if (!is(3, 0, GRAIN_SECTORS)) throw fail('UNSUPPORTED', `grains of ${decimal(3)} sectors (only ${GRAIN_SECTORS})`, `Unsupported grain size: ${decimal(3)}`, 24)
    if (!is(4, 0, GT_SECTORS)) throw fail('UNSUPPORTED', `grain tables of ${decimal(4)} sectors (only ${GT_SECTORS})`, `Unsupported grain table size: ${decimal(4)}`, 32)
    if (!is(5, 0, 0)) throw fail('UNSUPPORTED', `const header flags ${hex16(...word(5))}`, `Unsupported flags: ${hex16(...word(5))}`, 40)
    if (![6, 7, 8, 9].every((i) => is(i, 0, 0))) {
      throw fail('UNSUPPORTED', 'const header reserved fields are not zero', `Unsupported reserved bits: ${[6, 7, 8, 9].map((i) => hex16(...word(i))).join(' ')}`, 48)
    }
    if (head.subarray(208).some((b) => b !== 0)) throw fail('UNSUPPORTED', 'const header padding is not zero', 'Unsupported non-zero const header padding', 208)
    const capacity = u64(c, 16)
    // QEMU multiplies in uint64: a huge sector number wraps (2^55 sectors is offset 0).
    const volatileAt = Number(BigInt.asUintN(64, c.getBigUint64(80, true) * BigInt(SECTOR)))
    const gdSector = u64(c, 128)
    const tablesSector = u64(c, 144)
    const grainsSector = u64(c, 192)

    // Past the end of the file QEMU reads zeros: a bad magic.
    const vol = volatileAt < options.fileSize ? await readPadded(storage, options.fileSize, volatileAt, SECTOR) : new Uint8Array(SECTOR)
    const v = new DataView(vol.buffer, vol.byteOffset, SECTOR)
    const vhi = v.getUint32(4, true)
    const vlo = v.getUint32(0, true)
    if (vhi !== 0 || vlo !== VOLATILE_MAGIC) throw fail('CORRUPT', `volatile header magic ${hex16(vhi, vlo)}`, `Bad volatile header magic: ${hex16(vhi, vlo)}`, volatileAt)
    if (v.getUint32(24, true) !== 0 || v.getUint32(28, true) !== 0) throw fail('UNSUPPORTED', 'image is dirty: its journal needs replaying', 'Image is dirty, Replaying journal not supported', volatileAt + 24)
    if (vol.subarray(32).some((b) => b !== 0)) throw fail('UNSUPPORTED', 'volatile header padding is not zero', 'Unsupported non-zero volatile header padding', volatileAt + 32)

    if (capacity > MAX_SECTOR) throw fail('CORRUPT', `capacity of ${decimal(2)} sectors is beyond what qimg addresses`, 'Invalid argument', 16)
    // vmdk_add_extent takes grain_dir_size × 512 / 8 as a uint32.
    const l1Size = Number(((BigInt(word(17)[0]) << 32n | BigInt(word(17)[1])) * 64n) & 0xffffffffn)
    if (l1Size > MAX_L1_ENTRIES) throw fail('CORRUPT', `grain directory of ${l1Size} entries`, 'L1 size too big', 136)
    const gdAt = gdSector * SECTOR
    if (!Number.isSafeInteger(gdAt) || gdAt + l1Size * 8 > options.fileSize) {
      throw fail('CORRUPT', `grain directory at sector ${decimal(16)} (${l1Size} entries) is outside the file (${options.fileSize} bytes)`, `Could not read l1 table from extent '${file}': Invalid argument`, 128)
    }
    const raw = l1Size > 0 ? await storage.read(gdAt, l1Size * 8) : new Uint8Array(0)
    const gd = new Uint32Array(l1Size * 2)
    const r = new DataView(raw.buffer, raw.byteOffset, raw.length)
    for (let i = 0; i < gd.length; i++) gd[i] = r.getUint32(i * 4, true)
    return new SeSparseExtent(storage, capacity, gd, tablesSector, grainsSector, options.fileSize)
  }

  #corrupt(message: string, offset?: number): ImageError {
    const file = this.storage.name
    return new ImageError('CORRUPT', `${file}: VMDK seSparse ${message}`, { file, qemuText: 'Input/output error', ...(offset === undefined ? {} : { offset }) })
  }

  /** The grain table at sector `sector`, from the cache or the file. */
  async #table(sector: number): Promise<Uint32Array> {
    const cached = this.#tables.get(sector)
    if (cached) return cached
    const offset = sector * SECTOR
    const bytes = GTES_PER_GT * 8
    if (offset + bytes > this.#fileSize) throw this.#corrupt(`grain table at ${hex(offset)} (${bytes} bytes) is outside the file (${this.#fileSize} bytes)`, offset)
    const raw = await this.storage.read(offset, bytes)
    const view = new DataView(raw.buffer, raw.byteOffset, raw.length)
    const table = new Uint32Array(GTES_PER_GT * 2)
    for (let i = 0; i < table.length; i++) table[i] = view.getUint32(i * 4, true)
    if (this.#tables.size >= GT_CACHE_ENTRIES) this.#tables.clear()
    this.#tables.set(sector, table)
    return table
  }

  /** get_cluster_offset without allocation, for grain `grainIndex` of this extent. */
  async lookup(grainIndex: number): Promise<GrainLookup> {
    const l1Index = Math.floor(grainIndex / GTES_PER_GT)
    if (l1Index >= this.#gd.length / 2) throw this.#corrupt(`grain ${grainIndex} is beyond the grain directory's ${this.#gd.length / 2} entries`)
    const lo = this.#gd[2 * l1Index]!
    const hi = this.#gd[2 * l1Index + 1]!
    if (hi === 0 && lo === 0) return { kind: 'unallocated' }
    // A grain table's entry has 0x10000000 in its top half and the table's number below.
    if (hi !== 0x10000000) throw this.#corrupt(`grain directory entry ${l1Index} is ${hex16(hi, lo)}, not an allocated grain table`)
    const sector = this.#tablesSector + lo * GT_SECTORS
    if (sector > 0xffffffff) throw this.#corrupt(`grain table ${lo} (directory entry ${l1Index}) lies beyond sector 2^32`)
    const table = await this.#table(sector)
    const at = 2 * (grainIndex % GTES_PER_GT)
    const entry = decodeSeSparseEntry(table[at + 1]!, table[at]!)
    if (entry.kind === 'invalid') throw this.#corrupt(`grain table at ${hex(sector * SECTOR)}: entry ${at / 2} is ${hex16(table[at + 1]!, table[at]!)}, not a grain table entry`, sector * SECTOR + at * 4)
    if (entry.kind !== 'data') return { kind: entry.kind }
    const hostOffset = (this.#grainsSector + entry.cluster * GRAIN_SECTORS) * SECTOR
    if (!Number.isSafeInteger(hostOffset)) throw this.#corrupt(`grain ${grainIndex} at cluster ${entry.cluster} is beyond what qimg addresses`)
    return { kind: 'data', hostOffset }
  }
}
