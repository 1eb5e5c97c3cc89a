// A COWD sparse extent (VMDK3: ESX's vmfsSparse, also a hosted SPARSE extent), as QEMU 7.2's
// vmdk_open_vmfs_sparse reads it: after the magic, ten little-endian u32 fields (version,
// flags, disk_sectors, granularity, l1dir_offset, l1dir_size, file_sectors, cylinders, heads,
// sectors_per_track); grain tables of 4096 32-bit entries; no redundant directory, no
// compression, no zeroed grains. It is read and written like a hosted sparse extent.
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import type { Vmdk4Header } from './header.js'
import { MAX_CLUSTER_SECTORS, MAX_L1_ENTRIES, readPadded, SparseExtent, type SparseOpenOptions } from './sparse.js'

/** Entries of a COWD grain table (QEMU passes l2_size 4096 to vmdk_add_extent). */
export const COWD_GTES_PER_GT = 4096
/** Bytes of magic plus VMDK3Header. */
const COWD_HEADER_BYTES = 4 + 40

/** The VMDK3Header fields QEMU uses. */
export interface CowdHeader {
  diskSectors: number
  granularity: number
  l1dirOffset: number
  l1dirSize: number
}

/** Decodes the fields after the magic of a COWD file (`bytes` from offset 0, ≥ 44 bytes). */
export function decodeCowdHeader(bytes: Uint8Array): CowdHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  return { diskSectors: v.getUint32(12, true), granularity: v.getUint32(16, true), l1dirOffset: v.getUint32(20, true), l1dirSize: v.getUint32(24, true) }
}

/**
 * vmdk_open_vmfs_sparse: the extent's size, directory and grain size come straight from the
 * header (the directory's length is l1dir_size, not derived from the capacity), then
 * vmdk_add_extent's limits.
 */
export async function openCowd(storage: ReadableStorage, options: SparseOpenOptions): Promise<SparseExtent> {
  const file = storage.name
  const h = decodeCowdHeader(await readPadded(storage, options.fileSize, 0, COWD_HEADER_BYTES))
  if (h.granularity > MAX_CLUSTER_SECTORS) {
    throw new ImageError('CORRUPT', `${file}: VMDK COWD header: grains of ${h.granularity} sectors`, { file, offset: 16, qemuText: 'Invalid granularity, image may be corrupt' })
  }
  if (h.l1dirSize > MAX_L1_ENTRIES) {
    throw new ImageError('CORRUPT', `${file}: VMDK COWD header: ${h.l1dirSize} grain directory entries`, { file, offset: 24, qemuText: 'L1 size too big' })
  }
  // QEMU divides by l1_entry_sectors (4096 × granularity as a uint32) on every lookup: zero
  // (granularity 0, or a multiple of 2^20) would divide by zero there.
  if ((COWD_GTES_PER_GT * h.granularity) % 2 ** 32 === 0) {
    throw new ImageError('CORRUPT', `${file}: VMDK COWD header: grains of ${h.granularity} sectors make a grain table cover no sectors`, { file, offset: 16, qemuText: 'Invalid argument' })
  }
  const header: Vmdk4Header = {
    version: 0, flags: 0, capacity: BigInt(h.diskSectors), granularity: BigInt(h.granularity), descOffset: 0n, descSize: 0n,
    numGtesPerGt: COWD_GTES_PER_GT, rgdOffset: 0n, gdOffset: BigInt(h.l1dirOffset), grainOffset: 0n, compressAlgorithm: 0,
  }
  return SparseExtent.load(storage, header, h.l1dirSize, options)
}
