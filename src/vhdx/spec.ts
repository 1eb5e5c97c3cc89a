// VHDX constants from the VHDX Format Specification v1.00 (MS-VHDX), with QEMU's limits
// (block/vhdx.h), and the CRC-32C every VHDX structure carries.

/** §2.2: the file type identifier, the 8-byte signature at offset 0. */
export const FILE_SIGNATURE = 'vhdxfile'
/** §2.2.2: the two headers, each 4 KiB checksummed inside a 64 KiB slot. */
export const HEADER1_OFFSET = 64 * 1024
export const HEADER2_OFFSET = 128 * 1024
export const HEADER_SIZE = 4096
/** §2.2.3: the two copies of the region table, 64 KiB each (the checksum covers all 64 KiB). */
export const REGION_TABLE1_OFFSET = 192 * 1024
export const REGION_TABLE2_OFFSET = 256 * 1024
export const REGION_TABLE_SIZE = 64 * 1024
/** §2.2.3.1: at most 2047 region table entries. */
export const REGION_TABLE_MAX_ENTRIES = 2047
/** §2.2: the header section is the first 1 MiB; objects after it are 1 MiB aligned. */
export const HEADER_SECTION_END = 1024 * 1024
export const MIB = 1024 * 1024
/** §2.3: log sectors are 4 KiB; the log's offset and length are multiples of 1 MiB. */
export const LOG_SECTOR_SIZE = 4096
export const LOG_MIN_SIZE = MIB
/** §2.6.1: the metadata table takes the first 64 KiB of the metadata region. */
export const METADATA_TABLE_MAX_SIZE = 64 * 1024
/** §2.6.1.1: at most 2047 metadata entries. */
export const METADATA_MAX_ENTRIES = 2047
/** §2.6.2.1: block sizes 1 MiB to 256 MiB, powers of two. */
export const BLOCK_SIZE_MIN = MIB
export const BLOCK_SIZE_MAX = 256 * MIB
/** §2.5.1: a sector bitmap block covers 2^23 sectors (1 MiB of bits). */
export const MAX_SECTORS_PER_BLOCK = 2 ** 23
export const SECTOR_BITMAP_BLOCK_SIZE = MIB
/** QEMU's VHDX_MAX_IMAGE_SIZE: 64 TiB. */
export const MAX_IMAGE_SIZE = 64 * 1024 * 1024 * MIB

/** §2.5.1.1 payload block states (QEMU's PAYLOAD_BLOCK_*), the low 3 bits of a BAT entry. */
export const PAYLOAD_BLOCK_NOT_PRESENT = 0
export const PAYLOAD_BLOCK_UNDEFINED = 1
export const PAYLOAD_BLOCK_ZERO = 2
export const PAYLOAD_BLOCK_UNMAPPED = 3
/** The UNMAPPED value of the v0.95 draft, which QEMU also reads as zeros. */
export const PAYLOAD_BLOCK_UNMAPPED_V095 = 5
export const PAYLOAD_BLOCK_FULLY_PRESENT = 6
export const PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7
/** §2.5.1.2 sector bitmap block states. */
export const SB_BLOCK_NOT_PRESENT = 0
export const SB_BLOCK_PRESENT = 6

/** §2.6.1.2 metadata entry flags (QEMU's VHDX_META_FLAGS_*). */
export const META_IS_USER = 0x01
export const META_IS_VIRTUAL_DISK = 0x02
export const META_IS_REQUIRED = 0x04
/** §2.2.3.2 region entry flag: a region qimg does not know makes the file unreadable. */
export const REGION_IS_REQUIRED = 0x01
/** §2.6.2.1 file parameters flags. */
export const PARAMS_LEAVE_BLOCKS_ALLOCATED = 0x01
export const PARAMS_HAS_PARENT = 0x02

/** The GUIDs of §2.2.3.2 and §2.6.2, as MS writes them (data1-data2-data3-data4). */
export const BAT_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08'
export const METADATA_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e'
export const FILE_PARAMETERS_GUID = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b'
export const VIRTUAL_DISK_SIZE_GUID = '2fa54224-cd1b-4876-b211-5dbed83bf4b8'
export const PAGE83_GUID = 'beca12ab-b2e6-4523-93ef-c309e000c746'
export const LOGICAL_SECTOR_SIZE_GUID = '8141bf1d-a96f-4709-ba47-f233a8faab5f'
export const PHYSICAL_SECTOR_SIZE_GUID = 'cda348c7-445d-4471-9cc9-e9885251c556'
export const PARENT_LOCATOR_GUID = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c'
/** §2.6.2.6: the locator type of a VHDX parent. */
export const PARENT_VHDX_GUID = 'b04aefb7-d19e-4a81-b789-25b8e9445913'
export const ZERO_GUID = '00000000-0000-0000-0000-000000000000'

/** A GUID in its on-disk form (§1.2: data1..3 little-endian) as text, lower case. */
export function decodeGuid(bytes: Uint8Array, offset: number): string {
  const h = (i: number) => bytes[offset + i]!.toString(16).padStart(2, '0')
  const part = (indexes: number[]) => indexes.map(h).join('')
  return `${part([3, 2, 1, 0])}-${part([5, 4])}-${part([7, 6])}-${part([8, 9])}-${part([10, 11, 12, 13, 14, 15])}`
}

/** The on-disk bytes of a GUID given as text. */
export function encodeGuid(text: string, out: Uint8Array, offset: number): void {
  const hexText = text.replace(/-/g, '')
  const b = (i: number) => parseInt(hexText.slice(i * 2, i * 2 + 2), 16)
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]
  for (let i = 0; i < 16; i++) out[offset + i] = b(order[i]!)
}

let crcTable: Uint32Array | undefined

function table(): Uint32Array {
  if (crcTable) return crcTable
  crcTable = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    crcTable[n] = c >>> 0
  }
  return crcTable
}

/** CRC-32C (Castagnoli) of `bytes`, as §1.2 asks: standard init and final XOR. */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  const t = table()
  let c = ~crc >>> 0
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return ~c >>> 0
}

/** CRC-32C of `bytes` with the 4-byte checksum field at `fieldOffset` read as zero. */
export function checksumWithField(bytes: Uint8Array, fieldOffset: number): number {
  const copy = bytes.slice()
  copy.fill(0, fieldOffset, fieldOffset + 4)
  return crc32c(copy)
}

/** Stores the checksum of `bytes` at `fieldOffset` (little-endian). */
export function storeChecksum(bytes: Uint8Array, fieldOffset: number): void {
  const crc = checksumWithField(bytes, fieldOffset)
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(fieldOffset, crc, true)
}

/** True when the checksum stored at `fieldOffset` matches. */
export function checksumIsValid(bytes: Uint8Array, fieldOffset: number): boolean {
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(fieldOffset, true)
  return checksumWithField(bytes, fieldOffset) === stored
}

/** A 64-bit little-endian field as a number (VHDX offsets stay below 2^53 or are refused by the caller). */
export function getU64LE(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 2 ** 32
}

export function setU64LE(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 2 ** 32, true)
  view.setUint32(offset + 4, Math.floor(value / 2 ** 32), true)
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
