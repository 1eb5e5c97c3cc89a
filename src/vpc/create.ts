// Creating a VHD as QEMU's vpc_co_create_opts and vpc_co_create do: the size rounded up to whole
// sectors and (without force_size) to a CHS geometry; a dynamic disk is the footer, the dynamic
// header, an all-unused BAT and the footer again; a fixed disk is the guest bytes and the footer.
import { ImageError } from '../errors.js'
import { SIZE_OPTION } from '../format/create-options.js'
import type { CreateOptionDesc, FormatCreateRequest } from '../format/module.js'
import { DEFAULT_BLOCK_SIZE, DYNAMIC_HEADER_COOKIE, encodeDynamicHeader } from './dynamic-header.js'
import { FOOTER_BYTES, FOOTER_COOKIE, NO_DATA_OFFSET, VHD_DYNAMIC, VHD_FIXED, VHD_TIMESTAMP_BASE, encodeFooter } from './footer.js'
import { roundedImageSize } from './geometry.js'

/** vpc_create_opts, in qemu-img's order. */
export const VPC_CREATE_OPTIONS: readonly CreateOptionDesc[] = [
  SIZE_OPTION,
  { name: 'subformat', type: 'string', help: 'Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ' },
  { name: 'force_size', type: 'bool', help: 'Force disk size calculation to use the actual size specified, rather than using the nearest CHS-based calculation' },
]

/** What {@link vpcImageBytes} needs beyond the size. */
export interface VpcCreateOptions {
  fixed: boolean
  forceSize: boolean
  /** Seconds since the Unix epoch (the footer's timestamp). */
  nowSeconds: number
  /** 16 random bytes for the disk's UUID. */
  uuid: Uint8Array
}

/** A version 4 UUID from 16 random bytes, in RFC 4122 byte order. */
export function uuidV4(random: Uint8Array): Uint8Array {
  const u = random.slice(0, 16)
  u[6] = (u[6]! & 0x0f) | 0x40
  u[8] = (u[8]! & 0x3f) | 0x80
  return u
}

/** calculate_rounded_image_size fails with -EFBIG, which bdrv_img_create reports in its own words. */
const tooLarge = (file: string) => new ImageError('INVALID_ARGUMENT', "Disk size is too large, max size is 2040 GiB: the image size is too large for file format 'vpc'",
  { file, qemuText: "The image size is too large for file format 'vpc'" })

/**
 * The image's bytes (for a fixed disk only the footer, which goes at `guest size`): returns the
 * guest size and what to write where.
 */
export function vpcImageLayout(sizeBytes: number, options: VpcCreateOptions, file: string): { guestSize: number; writes: [number, Uint8Array][]; fileSize: number } {
  // vpc_co_create_opts: rounded up to sectors silently, then (without force_size) to the geometry.
  let size = Math.ceil(sizeBytes / 512) * 512
  if (!options.forceSize) {
    const rounded = roundedImageSize(size, false)
    if (!rounded) throw tooLarge(file)
    size = rounded.totalSectors * 512
  }
  const geometry = roundedImageSize(size, options.forceSize)
  if (!geometry) throw tooLarge(file)
  const diskType = options.fixed ? VHD_FIXED : VHD_DYNAMIC
  const footer = encodeFooter({
    cookie: FOOTER_COOKIE, features: 0x02, version: 0x00010000,
    dataOffset: options.fixed ? NO_DATA_OFFSET : BigInt(FOOTER_BYTES),
    timestamp: (options.nowSeconds - VHD_TIMESTAMP_BASE) >>> 0,
    creatorApp: options.forceSize ? 'qem2' : 'qemu', creatorMajor: 5, creatorMinor: 3, creatorOs: 'Wi2k',
    originalSize: BigInt(size), currentSize: BigInt(size),
    cylinders: geometry.cylinders, heads: geometry.heads, sectorsPerTrack: geometry.sectorsPerTrack,
    diskType, checksum: 0, uniqueId: options.uuid, savedState: 0,
  })
  if (options.fixed) return { guestSize: size, writes: [[size, footer]], fileSize: size + FOOTER_BYTES }
  // create_dynamic_disk: 2 MiB blocks, enough BAT entries for the geometry's sectors.
  const entries = Math.ceil(geometry.totalSectors / (DEFAULT_BLOCK_SIZE / 512))
  const batBytes = Math.ceil((entries * 4) / 512) * 512
  const batOffset = 3 * 512
  const header = encodeDynamicHeader({
    cookie: DYNAMIC_HEADER_COOKIE, dataOffset: NO_DATA_OFFSET, tableOffset: BigInt(batOffset), headerVersion: 0x00010000,
    maxTableEntries: entries, blockSize: DEFAULT_BLOCK_SIZE, checksum: 0, parentUniqueId: new Uint8Array(16),
    parentTimestamp: 0, parentUnicodeName: '', parentLocators: [],
  })
  const bat = new Uint8Array(batBytes).fill(0xff)
  const tail = batOffset + batBytes
  return {
    guestSize: size,
    writes: [[0, footer], [FOOTER_BYTES, header], [batOffset, bat], [tail, footer]],
    fileSize: tail + FOOTER_BYTES,
  }
}

function boolOption(options: ReadonlyMap<string, string>, name: string): boolean {
  const value = options.get(name)
  if (value === undefined || value === 'off') return false
  if (value === 'on') return true
  throw new ImageError('INVALID_ARGUMENT', `Parameter '${name}' expects 'on' or 'off'`)
}

export async function createVpc(request: FormatCreateRequest): Promise<void> {
  const subformat = request.options.get('subformat') ?? 'dynamic'
  if (subformat !== 'dynamic' && subformat !== 'fixed') {
    throw new ImageError('INVALID_ARGUMENT', `Parameter 'subformat' does not accept value '${subformat}'`)
  }
  const random = request.crypto ? request.crypto.randomBytes(16) : globalThis.crypto.getRandomValues(new Uint8Array(16))
  const layout = vpcImageLayout(request.size, {
    fixed: subformat === 'fixed', forceSize: boolOption(request.options, 'force_size'),
    nowSeconds: Math.floor(Date.now() / 1000), uuid: uuidV4(random),
  }, request.storage.name)
  if (subformat === 'fixed') {
    // blk_truncate of the new, empty file: QEMU's file layer then writes the first block
    // (file-posix allocate_first_block), so the file's allocation is QEMU's too.
    await request.storage.truncate(layout.fileSize)
    await request.storage.write(0, new Uint8Array(layout.fileSize < 4096 ? 512 : 4096))
  }
  for (const [offset, bytes] of layout.writes) await request.storage.write(offset, bytes)
}


