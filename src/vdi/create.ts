// Creating a VDI image as QEMU's vdi_co_do_create does: header, block map (all unallocated, or
// for a static image every block in order), and for a static image the file sized for all data.
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import { bmapBytes } from './bmap.js'
import {
  encodeHeader, SECTOR_SIZE, VDI_BLOCK_SIZE, VDI_DISK_SIZE_MAX, VDI_HEADER_BYTES, VDI_HEADER_SIZE_FIELD, VDI_SIGNATURE,
  VDI_TYPE_DYNAMIC, VDI_TYPE_STATIC, VDI_UNALLOCATED, VDI_VERSION_1_1, type VdiHeader,
} from './header.js'

/** What {@link createVdi} needs. */
export interface VdiCreateOptions {
  /** Virtual size in bytes (rounded up to whole sectors, silently, as QEMU does). */
  size: number
  /** A static (preallocated) image. */
  static: boolean
  /** 16 random bytes (a UUID is made of them). */
  random: (length: number) => Uint8Array
}

/**
 * A version 4 UUID as QEMU's qemu_uuid_generate makes one, stored as VDI stores UUIDs (the first
 * three fields little-endian: vdi_header_to_le byte-swaps them).
 */
function newUuid(random: (length: number) => Uint8Array): Uint8Array {
  const u = random(16).slice(0, 16)
  u[6] = (u[6]! & 0x0f) | 0x40
  u[8] = (u[8]! & 0x3f) | 0x80
  const swap = (from: number, length: number) => u.subarray(from, from + length).reverse()
  swap(0, 4)
  swap(4, 2)
  swap(6, 2)
  return u
}

/** Writes a new VDI image into the empty `storage`. */
export async function createVdi(storage: Storage, options: VdiCreateOptions): Promise<void> {
  const size = Math.ceil(options.size / SECTOR_SIZE) * SECTOR_SIZE
  if (size > VDI_DISK_SIZE_MAX) {
    const x = (n: number) => '0x' + BigInt(n).toString(16)
    const text = `Unsupported VDI image size (size is ${x(size)}, max supported is ${x(VDI_DISK_SIZE_MAX)})`
    // The command names the file ("qemu-img: FILE: …").
    throw new ImageError('INVALID_ARGUMENT', text, { file: storage.name })
  }
  const blocks = Math.ceil(size / VDI_BLOCK_SIZE)
  const mapBytes = bmapBytes(blocks)
  const offsetData = VDI_HEADER_BYTES + mapBytes
  const imageType = options.static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC
  const header: VdiHeader = {
    signature: VDI_SIGNATURE, version: VDI_VERSION_1_1, headerSize: VDI_HEADER_SIZE_FIELD, imageType, imageFlags: 0,
    offsetBmap: VDI_HEADER_BYTES, offsetData, cylinders: 0, heads: 0, sectors: 0, sectorSize: SECTOR_SIZE,
    diskSize: size, blockSize: VDI_BLOCK_SIZE, blockExtra: 0, blocksInImage: blocks,
    blocksAllocated: options.static ? blocks : 0,
    uuidImage: newUuid(options.random), uuidLastSnap: newUuid(options.random),
    uuidLink: new Uint8Array(16), uuidParent: new Uint8Array(16),
  }
  await storage.write(0, encodeHeader(header))
  if (mapBytes > 0) {
    const map = new Uint8Array(mapBytes)
    const view = new DataView(map.buffer)
    for (let i = 0; i < blocks; i++) view.setUint32(i * 4, options.static ? i : VDI_UNALLOCATED, true)
    await storage.write(VDI_HEADER_BYTES, map)
  }
  if (options.static) await storage.truncate(offsetData + blocks * VDI_BLOCK_SIZE)
}
