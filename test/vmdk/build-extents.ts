// VMDK extents qemu-img cannot create, built from the layouts QEMU 7.2 reads (block/vmdk.c):
// a COWD (VMDK3, vmfsSparse) sparse file, an ESXi seSparse extent, and the descriptor files
// that name them. Grains are given by index with their bytes; tables are laid out after the
// directory, grains after the tables, so a test can poke any structure at a known offset.

const SECTOR = 512

/** Where the builder put each structure (byte offsets), for tests that poke them. */
export interface BuiltLayout {
  bytes: Uint8Array
  directoryAt: number
  tablesAt: number
  grainsAt: number
}

/** A grain's content, or a special grain-table entry (seSparse only: zero, unmapped). */
export type GrainSpec = Uint8Array | 'zero' | 'unmapped'

/** Options of {@link buildCowd}. */
export interface CowdSpec {
  capacitySectors: number
  /** Sectors per grain (QEMU: cluster_sectors = granularity). */
  granularity: number
  grains: Map<number, Uint8Array>
  /** Directory entries (default: enough for the capacity). */
  directoryEntries?: number
}

/** Grain table entries in a COWD file (vmdk_open_vmfs_sparse passes 4096). */
export const COWD_GTES = 4096

/**
 * A COWD file: magic 'COWD', then version, flags, disk_sectors, granularity, l1dir_offset,
 * l1dir_size, file_sectors, cylinders, heads, sectors_per_track (u32 LE, QEMU's VMDK3Header).
 */
export function buildCowd(spec: CowdSpec): BuiltLayout {
  const coverage = COWD_GTES * spec.granularity
  const entries = spec.directoryEntries ?? Math.ceil(spec.capacitySectors / coverage)
  const directorySector = 1
  const tablesSector = directorySector + Math.ceil((entries * 4) / SECTOR)
  const tableSectors = (COWD_GTES * 4) / SECTOR
  const tables = new Map<number, number>()
  for (const grain of [...spec.grains.keys()].sort((a, b) => a - b)) {
    const l1 = Math.floor(grain / COWD_GTES)
    if (!tables.has(l1)) tables.set(l1, tablesSector + tables.size * tableSectors)
  }
  const grainsSector = tablesSector + tables.size * tableSectors
  const fileSectors = grainsSector + spec.grains.size * spec.granularity
  const bytes = new Uint8Array(fileSectors * SECTOR)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, 0x434f5744) // 'COWD'
  const header = [1, 3, spec.capacitySectors, spec.granularity, directorySector, entries, fileSectors, 0, 16, 63]
  header.forEach((value, i) => view.setUint32(4 + 4 * i, value, true))
  for (const [l1, sector] of tables) view.setUint32(directorySector * SECTOR + 4 * l1, sector, true)
  let next = grainsSector
  for (const [grain, data] of [...spec.grains].sort((a, b) => a[0] - b[0])) {
    const table = tables.get(Math.floor(grain / COWD_GTES))!
    view.setUint32(table * SECTOR + 4 * (grain % COWD_GTES), next, true)
    bytes.set(data.subarray(0, spec.granularity * SECTOR), next * SECTOR)
    next += spec.granularity
  }
  return { bytes, directoryAt: directorySector * SECTOR, tablesAt: tablesSector * SECTOR, grainsAt: grainsSector * SECTOR }
}

/** seSparse constants QEMU insists on (check_se_sparse_const_header). */
export const SESPARSE_GRAIN_SECTORS = 8
export const SESPARSE_GT_SECTORS = 64
export const SESPARSE_GTES = (SESPARSE_GT_SECTORS * SECTOR) / 8

/** Options of {@link buildSeSparse}. */
export interface SeSparseSpec {
  capacitySectors: number
  grains: Map<number, GrainSpec>
}

/** The grain table entry of an allocated grain at cluster `index`: nibble 3, index bits 0–11 at 48, the rest at 0. */
export function seSparseGrainEntry(index: number): bigint {
  const c = BigInt(index)
  return 0x3000000000000000n | ((c & 0xfffn) << 48n) | (c >> 12n)
}

/**
 * An seSparse extent: the 512-byte const header (magic 0xcafebabe, version 0x200000001,
 * grain 8 sectors, tables of 64 sectors, the regions' offsets and sizes in sectors), the
 * volatile header (magic 0xcafecafe, no journal to replay), a one-sector journal header and
 * journal, the grain directory, the grain tables, then the grains (vmdk_open_se_sparse).
 */
export function buildSeSparse(spec: SeSparseSpec): BuiltLayout & { constHeader: number; volatileHeader: number } {
  const coverage = SESPARSE_GTES * SESPARSE_GRAIN_SECTORS
  const directoryEntries = Math.max(1, Math.ceil(spec.capacitySectors / coverage))
  const directorySectors = Math.ceil((directoryEntries * 8) / SECTOR)
  const directorySector = 4
  const tablesSector = directorySector + directorySectors
  const tables = new Map<number, number>()
  for (const grain of [...spec.grains.keys()].sort((a, b) => a - b)) {
    const l1 = Math.floor(grain / SESPARSE_GTES)
    if (!tables.has(l1)) tables.set(l1, tables.size)
  }
  const tablesSectors = Math.max(1, tables.size) * SESPARSE_GT_SECTORS
  const grainsSector = tablesSector + tablesSectors
  const dataGrains = [...spec.grains].filter((g): g is [number, Uint8Array] => g[1] instanceof Uint8Array).sort((a, b) => a[0] - b[0])
  const grainsSectors = Math.max(1, dataGrains.length) * SESPARSE_GRAIN_SECTORS
  const fileSectors = grainsSector + grainsSectors
  const bytes = new Uint8Array(fileSectors * SECTOR)
  const view = new DataView(bytes.buffer)
  const u64 = (at: number, value: bigint | number) => view.setBigUint64(at, BigInt(value), true)
  // Const header fields in order (QEMU's VMDKSESparseConstHeader).
  const fields: (bigint | number)[] = [
    0xcafebaben, 0x0000000200000001n, spec.capacitySectors, SESPARSE_GRAIN_SECTORS, SESPARSE_GT_SECTORS, 0, 0, 0, 0, 0,
    1, 1, // volatile header
    2, 1, // journal header
    3, 1, // journal
    directorySector, directorySectors,
    tablesSector, tablesSectors,
    0, 0, // free bitmap
    0, 0, // backmap
    grainsSector, grainsSectors,
  ]
  fields.forEach((value, i) => u64(8 * i, value))
  u64(SECTOR, 0xcafecafen)
  u64(SECTOR + 8, tables.size)
  u64(SECTOR + 16, 1)
  for (const [l1, index] of tables) u64(directorySector * SECTOR + 8 * l1, 0x1000000000000000n | BigInt(index))
  let cluster = 0
  for (const [grain, content] of [...spec.grains].sort((a, b) => a[0] - b[0])) {
    const table = tablesSector + tables.get(Math.floor(grain / SESPARSE_GTES))! * SESPARSE_GT_SECTORS
    const at = table * SECTOR + 8 * (grain % SESPARSE_GTES)
    if (content === 'zero') u64(at, 0x2000000000000000n)
    else if (content === 'unmapped') u64(at, 0x1000000000000000n)
    else {
      u64(at, seSparseGrainEntry(cluster))
      bytes.set(content.subarray(0, SESPARSE_GRAIN_SECTORS * SECTOR), (grainsSector + cluster * SESPARSE_GRAIN_SECTORS) * SECTOR)
      cluster++
    }
  }
  return { bytes, directoryAt: directorySector * SECTOR, tablesAt: tablesSector * SECTOR, grainsAt: grainsSector * SECTOR, constHeader: 0, volatileHeader: SECTOR }
}

/** The descriptor file of a disk whose extents are `lines` ("RW 2048 SESPARSE \"x.vmdk\""). */
export function extentDescriptor(createType: string, lines: string[]): Uint8Array {
  const text = '# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\n' +
    `createType="${createType}"\n\n# Extent description\n${lines.map((l) => l + '\n').join('')}\n` +
    '# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\nddb.adapterType = "ide"\n'
  return new TextEncoder().encode(text)
}
