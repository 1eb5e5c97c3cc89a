// Creating a VHDX as QEMU's vhdx_co_create_opts and vhdx_co_create do: the file identifier,
// both headers (a random sequence number and its successor), the region table twice, the BAT
// (written only when its entries are not all zero), the metadata table and its five items;
// a dynamic file ends 5 MiB past the BAT, a fixed one has the guest bytes there.
import { ImageError } from '../errors.js'
import { SIZE_OPTION } from '../format/create-options.js'
import type { CreateOptionDesc, FormatCreateRequest } from '../format/module.js'
import { parseBool, parseOptionSize } from '../format/option-values.js'
import { Bat, batEntryCount } from './bat.js'
import { defaultRandom, randomGuid } from './headers.js'
import {
  BAT_GUID, BLOCK_SIZE_MAX, FILE_PARAMETERS_GUID, HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SECTION_END, LOGICAL_SECTOR_SIZE_GUID, MAX_IMAGE_SIZE,
  MAX_SECTORS_PER_BLOCK, METADATA_GUID, META_IS_REQUIRED, META_IS_VIRTUAL_DISK, MIB, PAGE83_GUID, PARAMS_LEAVE_BLOCKS_ALLOCATED,
  PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_NOT_PRESENT, PAYLOAD_BLOCK_ZERO, PHYSICAL_SECTOR_SIZE_GUID, REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET, VIRTUAL_DISK_SIZE_GUID, ZERO_GUID, encodeGuid, setU64LE, viewOf,
} from './spec.js'
import { encodeHeader, encodeMetadataTable, encodeRegionTable, utf16le } from './structures.js'
import type { VhdxMetadata } from './metadata.js'

/** vhdx_create_opts, in qemu-img's order. */
export const VHDX_CREATE_OPTIONS: readonly CreateOptionDesc[] = [
  { ...SIZE_OPTION, help: 'Virtual disk size; max of 64TB.' },
  { name: 'log_size', type: 'size', help: 'Log size; min 1MB.', default: '1048576' },
  { name: 'block_size', type: 'size', help: 'Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.', default: '0' },
  { name: 'subformat', type: 'string', help: "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'." },
  { name: 'block_state_zero', type: 'bool', help: "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to 'off' when using 'qemu-img convert' with subformat=dynamic." },
]

/** The creator field QEMU writes after the signature ("QEMU v" QEMU_VERSION). */
export const CREATOR = 'QEMU v7.2.22'

export interface VhdxCreateParams {
  size: number
  logSize: number
  blockSize: number
  fixed: boolean
  zeroBlocks: boolean
  random: (n: number) => Uint8Array
}

/** QEMU's BDRV_REQUEST_MAX_BYTES. */
const MAX_REQUEST_BYTES = 0x7ffffe00

const invalid = (text: string) => new ImageError('INVALID_ARGUMENT', text)

/** vhdx_co_create_opts' rounding and vhdx_co_create's checks and defaults, with QEMU's messages. */
export function vhdxCreateParams(options: ReadonlyMap<string, string>, requestedSize: number, random = defaultRandom): VhdxCreateParams {
  const size = Math.ceil(requestedSize / 512) * 512
  const subformat = options.get('subformat') ?? 'dynamic'
  if (subformat !== 'dynamic' && subformat !== 'fixed') throw invalid(`Parameter 'subformat' does not accept value '${subformat}'`)
  const logOption = options.get('log_size')
  let logSize = logOption === undefined ? MIB : Math.ceil(parseOptionSize('log_size', logOption) / MIB) * MIB
  const blockOption = options.get('block_size')
  let blockSize = blockOption === undefined ? 0 : Math.min(Math.ceil(parseOptionSize('block_size', blockOption) / MIB) * MIB, BLOCK_SIZE_MAX)
  const zeroOption = options.get('block_state_zero')
  const zeroBlocks = zeroOption === undefined ? true : parseBool('block_state_zero', zeroOption)
  if (size > MAX_IMAGE_SIZE) throw invalid('Image size too large; max of 64TB')
  if (logSize > 0xffff_ffff) throw invalid('Log size must be smaller than 4 GB')
  if (logSize < MIB || logSize % MIB !== 0) throw invalid('Log size must be a multiple of 1 MB')
  if (blockSize === 0) {
    // "pretty arbitrary, and mainly designed to keep the BAT size reasonable"
    blockSize = size > 32 * 1024 * 1024 * MIB ? 64 * MIB : size > 100 * 1024 * MIB ? 32 * MIB : size > 1024 * MIB ? 16 * MIB : 8 * MIB
  }
  if ((blockSize & (blockSize - 1)) !== 0) throw invalid('Block size must be a power of two')
  logSize = Math.floor(logSize)
  return { size, logSize, blockSize, fixed: subformat === 'fixed', zeroBlocks, random }
}

/** What to write where, and how long the file is. */
export function vhdxImageLayout(p: VhdxCreateParams): { fileSize: number; writes: [number, Uint8Array][]; failure?: string } {
  const writes: [number, Uint8Array][] = []
  const id = new Uint8Array(8 + CREATOR.length * 2)
  for (let i = 0; i < 8; i++) id[i] = 'vhdxfile'.charCodeAt(i)
  id.set(utf16le(CREATOR), 8)
  writes.push([0, id])
  const sequence = BigInt(viewOf(p.random(4)).getUint32(0, true))
  const fileWriteGuid = randomGuid(p.random)
  const dataWriteGuid = randomGuid(p.random)
  const header = { signature: 'head', checksum: 0, fileWriteGuid, dataWriteGuid, logGuid: ZERO_GUID, logVersion: 0, version: 1, logLength: p.logSize, logOffset: HEADER_SECTION_END }
  writes.push([HEADER1_OFFSET, encodeHeader({ ...header, sequenceNumber: sequence })])
  writes.push([HEADER2_OFFSET, encodeHeader({ ...header, sequenceNumber: sequence + 1n })])
  const chunkRatio = (MAX_SECTORS_PER_BLOCK * 512) / p.blockSize
  const metadata: VhdxMetadata = {
    blockSize: p.blockSize, leaveBlocksAllocated: p.fixed, hasParent: false, virtualDiskSize: p.size, logicalSectorSize: 512, physicalSectorSize: 512,
    page83Data: randomGuid(p.random), parentLocator: undefined, chunkRatio,
  }
  const entries = batEntryCount(metadata)
  const batOffset = Math.ceil((HEADER_SECTION_END + p.logSize) / MIB) * MIB
  const batLength = Math.ceil((entries * 8) / MIB) * MIB
  const metadataOffset = batOffset + batLength
  const dataOffset = batOffset + batLength + 5 * MIB
  const fileSize = p.fixed ? dataOffset + p.size : dataOffset
  if ((p.fixed || p.zeroBlocks) && batLength > MAX_REQUEST_BYTES) {
    // One blk_pwrite of the whole BAT: above BDRV_REQUEST_MAX_BYTES the block layer says EIO.
    return { fileSize, writes, failure: 'Failed to write the BAT: Input/output error' }
  }
  if (p.fixed || p.zeroBlocks) {
    // vhdx_create_bat: entries filled as writes of whole blocks would fill them; a fixed disk's blocks follow the data offset.
    const bat = new Bat(new Uint8Array(batLength), metadata, batOffset)
    const state = p.zeroBlocks ? PAYLOAD_BLOCK_ZERO : p.fixed ? PAYLOAD_BLOCK_FULLY_PRESENT : PAYLOAD_BLOCK_NOT_PRESENT
    for (let block = 0; block * p.blockSize < p.size; block++) {
      const at = state === PAYLOAD_BLOCK_FULLY_PRESENT ? Math.ceil((dataOffset + block * p.blockSize) / MIB) * MIB : 0
      bat.set(bat.payloadIndex(block), state, at)
    }
    writes.push([batOffset, bat.bytes])
  }
  const regions = encodeRegionTable([
    { guid: BAT_GUID, fileOffset: batOffset, length: batLength, required: false },
    { guid: METADATA_GUID, fileOffset: metadataOffset, length: MIB, required: false },
  ])
  writes.push([REGION_TABLE1_OFFSET, regions], [REGION_TABLE2_OFFSET, regions])
  const itemsAt = 64 * 1024
  const sizes: [string, number, number][] = [
    [FILE_PARAMETERS_GUID, 8, META_IS_REQUIRED], [VIRTUAL_DISK_SIZE_GUID, 8, META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
    [PAGE83_GUID, 16, META_IS_REQUIRED | META_IS_VIRTUAL_DISK], [LOGICAL_SECTOR_SIZE_GUID, 4, META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
    [PHYSICAL_SECTOR_SIZE_GUID, 4, META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
  ]
  let at = itemsAt
  writes.push([metadataOffset, encodeMetadataTable(sizes.map(([itemId, length, flags]) => { const e = { itemId, offset: at, length, flags }; at += length; return e }))])
  const items = new Uint8Array(40)
  const v = viewOf(items)
  v.setUint32(0, p.blockSize, true)
  v.setUint32(4, p.fixed ? PARAMS_LEAVE_BLOCKS_ALLOCATED : 0, true)
  setU64LE(v, 8, p.size)
  encodeGuid(metadata.page83Data, items, 16)
  v.setUint32(32, 512, true)
  v.setUint32(36, 512, true)
  writes.push([metadataOffset + itemsAt, items])
  return { fileSize, writes }
}

export async function createVhdx(request: FormatCreateRequest): Promise<void> {
  const random = request.crypto ? (n: number) => request.crypto!.randomBytes(n) : defaultRandom
  const layout = vhdxImageLayout(vhdxCreateParams(request.options, request.size, random))
  // blk_truncate of the new file before the BAT (QEMU's order): the file is sparse past what is written.
  await request.storage.truncate(layout.fileSize)
  for (const [offset, bytes] of layout.writes) await request.storage.write(offset, bytes)
  if (layout.failure) throw new ImageError('IO', layout.failure, { file: request.storage.name, qemuText: layout.failure })
}
