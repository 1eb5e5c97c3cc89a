// The metadata region (MS-VHDX §2.6): its table and the items a disk needs — file parameters,
// virtual disk size, page 83 data, logical and physical sector sizes and, for a differencing
// disk, the parent locator — read and checked as QEMU's vhdx_parse_metadata does.
import { hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { readPadded } from './headers.js'
import { openError } from './fail.js'
import {
  BLOCK_SIZE_MAX, BLOCK_SIZE_MIN, FILE_PARAMETERS_GUID, LOGICAL_SECTOR_SIZE_GUID, MAX_IMAGE_SIZE, MAX_SECTORS_PER_BLOCK, METADATA_TABLE_MAX_SIZE,
  META_IS_REQUIRED, PAGE83_GUID, PARAMS_HAS_PARENT, PARAMS_LEAVE_BLOCKS_ALLOCATED, PARENT_LOCATOR_GUID, PHYSICAL_SECTOR_SIZE_GUID,
  VIRTUAL_DISK_SIZE_GUID, decodeGuid, getU64LE, viewOf,
} from './spec.js'
import { decodeMetadataEntry, decodeMetadataTable, decodeParentLocator, type MetadataEntry, type ParentLocator, type RegionEntry } from './structures.js'

export interface VhdxMetadata {
  blockSize: number
  leaveBlocksAllocated: boolean
  hasParent: boolean
  virtualDiskSize: number
  logicalSectorSize: number
  physicalSectorSize: number
  page83Data: string
  parentLocator: ParentLocator | undefined
  /** §2.5: payload blocks per sector bitmap block. */
  chunkRatio: number
}

const ITEMS: [string, string, number][] = [
  [FILE_PARAMETERS_GUID, 'file parameters', 8],
  [VIRTUAL_DISK_SIZE_GUID, 'virtual disk size', 8],
  [PAGE83_GUID, 'page 83 data', 16],
  [LOGICAL_SECTOR_SIZE_GUID, 'logical sector size', 4],
  [PHYSICAL_SECTOR_SIZE_GUID, 'physical sector size', 4],
  [PARENT_LOCATOR_GUID, 'parent locator', 20],
]

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0

export async function readMetadata(storage: ReadableStorage, fileSize: number, region: RegionEntry): Promise<VhdxMetadata> {
  const file = storage.name
  const base = region.fileOffset
  const where = `VHDX metadata table at ${hex(base)}`
  const table = await readPadded(storage, base, METADATA_TABLE_MAX_SIZE, fileSize)
  const head = decodeMetadataTable(table)
  if (head.signature !== 'metadata') throw openError('CORRUPT', file, where, `the signature is not 'metadata'`, base)
  if (head.entryCount * 32 > METADATA_TABLE_MAX_SIZE - 32) throw openError('CORRUPT', file, where, `${head.entryCount} entries do not fit the 64 KiB table`, base + 10)
  const found = new Map<string, MetadataEntry>()
  for (let i = 0; i < head.entryCount; i++) {
    const e = decodeMetadataEntry(table, i)
    const at = base + 32 + i * 32
    const known = ITEMS.find(([guid]) => guid === e.itemId)
    if (known) {
      if (found.has(e.itemId)) throw openError('CORRUPT', file, where, `entry ${i} is a second ${known[1]} item`, at)
      // qimg's rule: an item lies inside the metadata region and is as long as its structure.
      if (e.length < known[2] || e.offset + e.length > region.length) {
        throw openError('CORRUPT', file, where, `entry ${i} (${known[1]}) at region offset ${hex(e.offset)}, ${e.length} bytes, is not a whole item inside the ${region.length}-byte region`, at)
      }
      found.set(e.itemId, e)
    } else if (e.flags & META_IS_REQUIRED) {
      throw openError('UNSUPPORTED', file, where, `entry ${i} is a required item qimg does not know (${e.itemId})`, at, 'Operation not supported')
    }
  }
  for (const [guid, name] of ITEMS.slice(0, 5)) {
    if (!found.has(guid)) throw openError('UNSUPPORTED', file, where, `the required ${name} item is missing`, base, 'Operation not supported')
  }
  const item = async (guid: string) => {
    const e = found.get(guid)!
    return readPadded(storage, base + e.offset, e.length, fileSize)
  }
  const params = viewOf(await item(FILE_PARAMETERS_GUID))
  const blockSize = params.getUint32(0, true)
  const bits = params.getUint32(4, true)
  const hasParent = (bits & PARAMS_HAS_PARENT) !== 0
  const paramsAt = base + found.get(FILE_PARAMETERS_GUID)!.offset
  let parentLocator: ParentLocator | undefined
  if (hasParent) {
    if (!found.has(PARENT_LOCATOR_GUID)) throw openError('CORRUPT', file, `VHDX file parameters at ${hex(paramsAt)}`, 'the disk has a parent but no parent locator', paramsAt)
    const e = found.get(PARENT_LOCATOR_GUID)!
    parentLocator = decodeParentLocator(await item(PARENT_LOCATOR_GUID), (rule) => openError('CORRUPT', file, `VHDX parent locator at ${hex(base + e.offset)}`, rule, base + e.offset))
  }
  const virtualDiskSize = getU64LE(viewOf(await item(VIRTUAL_DISK_SIZE_GUID)), 0)
  const logicalSectorSize = viewOf(await item(LOGICAL_SECTOR_SIZE_GUID)).getUint32(0, true)
  const physicalSectorSize = viewOf(await item(PHYSICAL_SECTOR_SIZE_GUID)).getUint32(0, true)
  if (blockSize < BLOCK_SIZE_MIN || blockSize > BLOCK_SIZE_MAX || !isPowerOfTwo(blockSize)) {
    throw openError('CORRUPT', file, `VHDX file parameters at ${hex(paramsAt)}`, `block size ${blockSize} is not a power of two from 1 MiB to 256 MiB`, paramsAt)
  }
  const sizeAt = base + found.get(LOGICAL_SECTOR_SIZE_GUID)!.offset
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) throw openError('CORRUPT', file, `VHDX logical sector size at ${hex(sizeAt)}`, `${logicalSectorSize} is neither 512 nor 4096`, sizeAt, 'Operation not supported')
  const diskSizeAt = base + found.get(VIRTUAL_DISK_SIZE_GUID)!.offset
  // qimg's rules: the size is whole logical sectors (the spec's own) and at most 64 TiB (QEMU's limit on create).
  if (virtualDiskSize > MAX_IMAGE_SIZE || virtualDiskSize % logicalSectorSize !== 0) {
    throw openError('UNSUPPORTED', file, `VHDX virtual disk size at ${hex(diskSizeAt)}`, `${virtualDiskSize} bytes is not a whole number of ${logicalSectorSize}-byte sectors up to 64 TiB`, diskSizeAt)
  }
  return {
    blockSize, leaveBlocksAllocated: (bits & PARAMS_LEAVE_BLOCKS_ALLOCATED) !== 0, hasParent, virtualDiskSize, logicalSectorSize, physicalSectorSize,
    page83Data: decodeGuid(await item(PAGE83_GUID), 0), parentLocator, chunkRatio: (MAX_SECTORS_PER_BLOCK * logicalSectorSize) / blockSize,
  }
}
