// The VDI header (VirtualBox Disk Image, version 1.1), as QEMU's block/vdi.c reads and writes
// it: decode, encode, and the rules vdi_open enforces, with QEMU's messages.
import { ImageError, hex } from '../errors.js'

/** The signature at HEADER.signature (offset 0x40), little-endian. */
export const VDI_SIGNATURE = 0xbeda107f
/** The one version QEMU opens: 1.1. */
export const VDI_VERSION_1_1 = 0x00010001
export const VDI_TYPE_DYNAMIC = 1
export const VDI_TYPE_STATIC = 2
/** The text QEMU writes at the start of the images it creates. */
export const VDI_TEXT = '<<< QEMU VM Virtual Disk Image >>>\n'
/** A block map entry for a never-allocated block. */
export const VDI_UNALLOCATED = 0xffffffff
/** A block map entry for a discarded block (reads zeros). */
export const VDI_DISCARDED = 0xfffffffe
/**
 * The most blocks an image may have (QEMU 7.2's VDI_BLOCKS_IN_IMAGE_MAX): the block map, read in
 * one request and rounded up to whole sectors, must stay within INT_MAX bytes.
 */
export const VDI_BLOCKS_IN_IMAGE_MAX = (2 ** 31 - 512) / 4
/** The only block size QEMU opens and creates. */
export const VDI_BLOCK_SIZE = 1024 * 1024
/** The largest disk: VDI_BLOCKS_IN_IMAGE_MAX blocks of 1 MiB (QEMU's VDI_DISK_SIZE_MAX). */
export const VDI_DISK_SIZE_MAX = VDI_BLOCKS_IN_IMAGE_MAX * VDI_BLOCK_SIZE
export const SECTOR_SIZE = 512
/** Bytes of the header structure QEMU reads and writes (VdiHeader, with its padding). */
export const VDI_HEADER_BYTES = 512
/** What QEMU stores as header_size. */
export const VDI_HEADER_SIZE_FIELD = 0x180

/** Byte offsets of the header fields. */
export const FIELD = {
  signature: 0x40,
  version: 0x44,
  headerSize: 0x48,
  imageType: 0x4c,
  imageFlags: 0x50,
  description: 0x54,
  offsetBmap: 0x154,
  offsetData: 0x158,
  cylinders: 0x15c,
  heads: 0x160,
  sectors: 0x164,
  sectorSize: 0x168,
  diskSize: 0x170,
  blockSize: 0x178,
  blockExtra: 0x17c,
  blocksInImage: 0x180,
  blocksAllocated: 0x184,
  uuidImage: 0x188,
  uuidLastSnap: 0x198,
  uuidLink: 0x1a8,
  uuidParent: 0x1b8,
} as const

/** A decoded VDI header. */
export interface VdiHeader {
  signature: number
  version: number
  headerSize: number
  imageType: number
  imageFlags: number
  offsetBmap: number
  offsetData: number
  cylinders: number
  heads: number
  sectors: number
  sectorSize: number
  /** As stored (may be odd; {@link validateHeader} gives the size QEMU uses). */
  diskSize: number
  blockSize: number
  blockExtra: number
  blocksInImage: number
  blocksAllocated: number
  /** The four UUIDs, as the 16 stored bytes each. */
  uuidImage: Uint8Array
  uuidLastSnap: Uint8Array
  uuidLink: Uint8Array
  uuidParent: Uint8Array
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
}

/** Decodes the first {@link VDI_HEADER_BYTES} bytes of an image (no validation). */
export function decodeHeader(bytes: Uint8Array): VdiHeader {
  const v = view(bytes)
  const u32 = (at: number) => v.getUint32(at, true)
  const uuid = (at: number) => bytes.slice(at, at + 16)
  return {
    signature: u32(FIELD.signature),
    version: u32(FIELD.version),
    headerSize: u32(FIELD.headerSize),
    imageType: u32(FIELD.imageType),
    imageFlags: u32(FIELD.imageFlags),
    offsetBmap: u32(FIELD.offsetBmap),
    offsetData: u32(FIELD.offsetData),
    cylinders: u32(FIELD.cylinders),
    heads: u32(FIELD.heads),
    sectors: u32(FIELD.sectors),
    sectorSize: u32(FIELD.sectorSize),
    diskSize: Number(v.getBigUint64(FIELD.diskSize, true)),
    blockSize: u32(FIELD.blockSize),
    blockExtra: u32(FIELD.blockExtra),
    blocksInImage: u32(FIELD.blocksInImage),
    blocksAllocated: u32(FIELD.blocksAllocated),
    uuidImage: uuid(FIELD.uuidImage),
    uuidLastSnap: uuid(FIELD.uuidLastSnap),
    uuidLink: uuid(FIELD.uuidLink),
    uuidParent: uuid(FIELD.uuidParent),
  }
}

/**
 * Encodes `header` over `base` (a copy of the stored header, so text, description and the
 * unused fields stay as they were), or over a fresh header with QEMU's text.
 */
export function encodeHeader(header: VdiHeader, base?: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(VDI_HEADER_BYTES)
  if (base) bytes.set(base.subarray(0, VDI_HEADER_BYTES))
  else bytes.set(new TextEncoder().encode(VDI_TEXT))
  const v = view(bytes)
  const put = (at: number, value: number) => v.setUint32(at, value, true)
  put(FIELD.signature, header.signature)
  put(FIELD.version, header.version)
  put(FIELD.headerSize, header.headerSize)
  put(FIELD.imageType, header.imageType)
  put(FIELD.imageFlags, header.imageFlags)
  put(FIELD.offsetBmap, header.offsetBmap)
  put(FIELD.offsetData, header.offsetData)
  put(FIELD.cylinders, header.cylinders)
  put(FIELD.heads, header.heads)
  put(FIELD.sectors, header.sectors)
  put(FIELD.sectorSize, header.sectorSize)
  v.setBigUint64(FIELD.diskSize, BigInt(header.diskSize), true)
  put(FIELD.blockSize, header.blockSize)
  put(FIELD.blockExtra, header.blockExtra)
  put(FIELD.blocksInImage, header.blocksInImage)
  put(FIELD.blocksAllocated, header.blocksAllocated)
  bytes.set(header.uuidImage, FIELD.uuidImage)
  bytes.set(header.uuidLastSnap, FIELD.uuidLastSnap)
  bytes.set(header.uuidLink, FIELD.uuidLink)
  bytes.set(header.uuidParent, FIELD.uuidParent)
  return bytes
}

const isNull = (uuid: Uint8Array) => uuid.every((b) => b === 0)

/**
 * vdi_open's rules, in QEMU's order and with its texts (ImageError.qemuText); the message adds
 * the file, the field and its offset (qemuText as qemu-img prints it: "Could not open 'FILE': …"). Returns the disk size QEMU uses: an odd one (VBoxManage
 * convertfromraw makes them) rounded up to whole sectors, which QEMU does without a word.
 */
export function validateHeader(header: VdiHeader, file: string): number {
  const fail = (code: 'NOT_AN_IMAGE' | 'UNSUPPORTED' | 'CORRUPT', field: keyof typeof FIELD, rule: string, qemuText: string) => {
    throw new ImageError(code, `${file}: VDI header ${field} at ${hex(FIELD[field])}: ${rule}`, { file, offset: FIELD[field], qemuText: `Could not open '${file}': ${qemuText}` })
  }
  const h = header
  const x64 = (n: number) => BigInt(n).toString(16)
  if (h.diskSize > VDI_DISK_SIZE_MAX) {
    fail('UNSUPPORTED', 'diskSize', `disk size ${hex(h.diskSize)} is above the maximum ${hex(VDI_DISK_SIZE_MAX)}`,
      `Unsupported VDI image size (size is 0x${x64(h.diskSize)}, max supported is 0x${x64(VDI_DISK_SIZE_MAX)})`)
  }
  const diskSize = Math.ceil(h.diskSize / SECTOR_SIZE) * SECTOR_SIZE
  const blocksRoom = h.blocksInImage * h.blockSize
  if (h.signature !== VDI_SIGNATURE) {
    const sig = h.signature.toString(16).padStart(8, '0')
    fail('NOT_AN_IMAGE', 'signature', `signature ${sig} is not ${VDI_SIGNATURE.toString(16)}`, `Image not in VDI format (bad signature ${sig})`)
  } else if (h.version !== VDI_VERSION_1_1) {
    const text = `${h.version >>> 16}.${h.version & 0xffff}`
    fail('UNSUPPORTED', 'version', `version ${text} is not 1.1`, `unsupported VDI image (version ${text})`)
  } else if (h.offsetBmap % SECTOR_SIZE !== 0) {
    fail('UNSUPPORTED', 'offsetBmap', `block map offset ${hex(h.offsetBmap)} is not a multiple of ${SECTOR_SIZE}`, `unsupported VDI image (unaligned block map offset ${hex(h.offsetBmap)})`)
  } else if (h.offsetData % SECTOR_SIZE !== 0) {
    fail('UNSUPPORTED', 'offsetData', `data offset ${hex(h.offsetData)} is not a multiple of ${SECTOR_SIZE}`, `unsupported VDI image (unaligned data offset ${hex(h.offsetData)})`)
  } else if (h.sectorSize !== SECTOR_SIZE) {
    fail('UNSUPPORTED', 'sectorSize', `sector size ${h.sectorSize} is not ${SECTOR_SIZE}`, `unsupported VDI image (sector size ${h.sectorSize} is not ${SECTOR_SIZE})`)
  } else if (h.blockSize !== VDI_BLOCK_SIZE) {
    fail('UNSUPPORTED', 'blockSize', `block size ${h.blockSize} is not ${VDI_BLOCK_SIZE}`, `unsupported VDI image (block size ${h.blockSize} is not ${VDI_BLOCK_SIZE})`)
  } else if (diskSize > blocksRoom) {
    fail('CORRUPT', 'diskSize', `disk size ${diskSize} is more than ${h.blocksInImage} blocks of ${h.blockSize} bytes hold`, `unsupported VDI image (disk size ${diskSize}, image bitmap has room for ${blocksRoom})`)
  } else if (!isNull(h.uuidLink)) {
    fail('UNSUPPORTED', 'uuidLink', 'a link UUID (a differencing image) is not supported', 'unsupported VDI image (non-NULL link UUID)')
  } else if (!isNull(h.uuidParent)) {
    fail('UNSUPPORTED', 'uuidParent', 'a parent UUID (a differencing image) is not supported', 'unsupported VDI image (non-NULL parent UUID)')
  } else if (h.blocksInImage > VDI_BLOCKS_IN_IMAGE_MAX) {
    fail('UNSUPPORTED', 'blocksInImage', `${h.blocksInImage} blocks is above the maximum ${VDI_BLOCKS_IN_IMAGE_MAX}`, `unsupported VDI image (too many blocks ${h.blocksInImage}, max is ${VDI_BLOCKS_IN_IMAGE_MAX})`)
  }
  return diskSize
}
