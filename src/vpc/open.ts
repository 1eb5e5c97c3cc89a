// vpc_open: the footer (at offset 0 for dynamic and differencing disks, at the end for fixed
// ones), its checksum, the guest size, the dynamic header and the BAT, with QEMU's checks in
// QEMU's order and its texts. Reads past the end of the file see zeros, as QEMU's do.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import {
  FOOTER_BYTES, SECTOR_SIZE, VHD_DIFFERENCING, VHD_FIXED, dataView, decodeFooter, hasCookie, verifyFooterChecksum, type VhdFooter,
} from './footer.js'
import { VHD_MAX_SECTORS, guestSectors } from './geometry.js'
import { BAT_UNUSED, DYNAMIC_HEADER_BYTES, DYNAMIC_HEADER_COOKIE, bitmapBytes, decodeDynamicHeader, type DynamicHeader } from './dynamic-header.js'

/** QEMU's BDRV_MAX_LENGTH bound on request offsets: reads beyond it fail rather than see zeros. */
const MAX_REQUEST_END = 2n ** 63n - 2n ** 31n
/** QEMU's BDRV_REQUEST_MAX_BYTES: the longest single request (INT_MAX in whole sectors). */
const MAX_REQUEST_BYTES = 0x7ffffe00

/** What open learned of a dynamic or differencing disk. */
export interface VpcSparse {
  header: DynamicHeader
  headerOffset: number
  blockSize: number
  bitmapSize: number
  batOffset: number
  bat: Uint32Array
  /** free_data_block_offset: where the next block goes (and the footer after it). */
  freeOffset: number
}

/** A parsed image, before the driver is made. */
export interface VpcLayout {
  footer: VhdFooter
  /** The footer as read: what a dynamic disk writes at its end after each allocation. */
  footerBytes: Uint8Array
  fileSize: number
  virtualSize: number
  /** Undefined for a fixed disk. */
  sparse: VpcSparse | undefined
}

/** Reads `length` bytes at `offset`, zeros past the end of the file (QEMU's bdrv_pread over a file). */
export async function readPadded(storage: ReadableStorage, offset: number, length: number, fileSize: number): Promise<Uint8Array> {
  const out = new Uint8Array(length)
  const available = Math.min(length, fileSize - offset)
  if (available > 0) out.set(await storage.read(offset, available))
  return out
}

function openError(code: 'NOT_AN_IMAGE' | 'CORRUPT' | 'UNSUPPORTED' | 'IO', file: string, where: string, text: string, offset?: number): ImageError {
  return new ImageError(code, `${file}: ${where}: ${text}`, { file, ...(offset === undefined ? {} : { offset }), qemuText: `Could not open '${file}': ${text}` })
}

async function readFooter(storage: ReadableStorage, file: string, fileSize: number): Promise<{ bytes: Uint8Array; at: number }> {
  const head = await readPadded(storage, 0, FOOTER_BYTES, fileSize)
  if (hasCookie(head)) return { bytes: head, at: 0 }
  if (fileSize < FOOTER_BYTES) throw openError('NOT_AN_IMAGE', file, 'VHD footer', 'File too small for a VHD header')
  // A fixed disk has its footer only at the end of the file.
  const at = fileSize - FOOTER_BYTES
  const tail = await storage.read(at, FOOTER_BYTES)
  if (!hasCookie(tail) || dataView(tail).getUint32(60) !== VHD_FIXED) {
    throw openError('NOT_AN_IMAGE', file, `VHD footer at ${hex(at)}`, 'invalid VPC image', at)
  }
  return { bytes: tail, at }
}

async function readSparse(storage: ReadableStorage, file: string, fileSize: number, footer: VhdFooter, totalSectors: number): Promise<VpcSparse> {
  if (footer.dataOffset + BigInt(DYNAMIC_HEADER_BYTES) > MAX_REQUEST_END) {
    throw openError('CORRUPT', file, `VHD footer data offset 0x${footer.dataOffset.toString(16)}`, 'Error reading dynamic VHD header')
  }
  const headerOffset = Number(footer.dataOffset)
  const header = decodeDynamicHeader(await readPadded(storage, headerOffset, DYNAMIC_HEADER_BYTES, fileSize))
  const where = `VHD dynamic disk header at ${hex(headerOffset)}`
  if (header.cookie !== DYNAMIC_HEADER_COOKIE) throw openError('NOT_AN_IMAGE', file, where, 'Invalid header magic', headerOffset)
  const blockSize = header.blockSize
  if (blockSize < SECTOR_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw openError('UNSUPPORTED', file, where, `Invalid block size ${blockSize}`, headerOffset + 32)
  }
  const bitmapSize = bitmapBytes(blockSize)
  // QEMU keeps max_table_entries in an int: a value of 2^31 or more is negative there.
  const entries = header.maxTableEntries
  const signed = entries | 0
  if (Math.floor((totalSectors * 512) / blockSize) > 0xffffffff) throw openError('UNSUPPORTED', file, where, 'Too many blocks', headerOffset + 28)
  if (signed >= 0 && entries * blockSize < totalSectors * 512) throw openError('CORRUPT', file, where, 'Page table too small', headerOffset + 28)
  if (signed < 0 || entries > Math.floor(0x7fffffff / 4)) {
    throw openError('UNSUPPORTED', file, where, `Max Table Entries too large (${signed})`, headerOffset + 28)
  }
  const batBytes = entries * 4
  // One read of the whole BAT: QEMU refuses a request above BDRV_REQUEST_MAX_BYTES or past BDRV_MAX_LENGTH.
  if (batBytes > MAX_REQUEST_BYTES || header.tableOffset + BigInt(batBytes) > MAX_REQUEST_END) {
    throw openError('CORRUPT', file, `${where}: BAT offset 0x${header.tableOffset.toString(16)}`, 'Error reading pagetable', headerOffset + 16)
  }
  const batOffset = Number(header.tableOffset)
  const truncated = 'block-vpc: free_data_block_offset points after the end of file. The image has been truncated.'
  let freeOffset = Math.ceil((batOffset + batBytes) / 512) * 512
  // Checked before the BAT is read, so its size is bounded by the file's.
  if (freeOffset > fileSize) throw openError('CORRUPT', file, `BAT at ${hex(batOffset)} (${entries} entries)`, truncated, batOffset)
  const raw = await storage.read(batOffset, batBytes)
  const view = dataView(raw)
  const bat = new Uint32Array(entries)
  for (let i = 0; i < entries; i++) {
    const entry = view.getUint32(i * 4)
    bat[i] = entry
    if (entry === BAT_UNUSED) continue
    const next = 512 * entry + bitmapSize + blockSize
    if (next > freeOffset) freeOffset = next
  }
  if (freeOffset > fileSize) {
    throw openError('CORRUPT', file, `BAT at ${hex(batOffset)}: a block ends at ${hex(freeOffset)}, past the end of the file (${hex(fileSize)})`, truncated, batOffset)
  }
  validateBlocks(bat, { file, headerOffset, batOffset, batBytes, blockSize, bitmapSize })
  return { header, headerOffset, blockSize, bitmapSize, batOffset, bat, freeOffset }
}

/**
 * A rule qimg adds to QEMU's open: every block (bitmap and data) lies after the footer copy, the
 * dynamic header and the BAT, and no two blocks overlap, so a write never lands on metadata or on
 * another block's data.
 */
function validateBlocks(bat: Uint32Array, g: { file: string; headerOffset: number; batOffset: number; batBytes: number; blockSize: number; bitmapSize: number }): void {
  const span = g.bitmapSize + g.blockSize
  const metadata: [number, number, string][] = [
    [0, FOOTER_BYTES, 'the footer copy'],
    [g.headerOffset, g.headerOffset + DYNAMIC_HEADER_BYTES, 'the dynamic disk header'],
    [g.batOffset, g.batOffset + g.batBytes, 'the BAT'],
  ]
  const used: [number, number][] = []
  for (let i = 0; i < bat.length; i++) if (bat[i] !== BAT_UNUSED) used.push([bat[i]! * 512, i])
  used.sort((a, b) => a[0] - b[0])
  const fail = (index: number, start: number, what: string) => {
    const offset = g.batOffset + index * 4
    return new ImageError('CORRUPT', `${g.file}: BAT at ${hex(g.batOffset)}: entry ${index} (at ${hex(offset)}) puts its block at ${hex(start)}, over ${what}`, { file: g.file, offset })
  }
  for (let k = 0; k < used.length; k++) {
    const [start, index] = used[k]!
    const end = start + span
    for (const [from, to, what] of metadata) if (start < to && from < end) throw fail(index, start, what)
    if (k > 0 && used[k - 1]![0] + span > start) throw fail(index, start, `the block of entry ${used[k - 1]![1]}`)
  }
}

/** Parses and checks an image as vpc_open does. */
export async function openLayout(storage: ReadableStorage): Promise<VpcLayout> {
  const file = storage.name
  const fileSize = await storage.size()
  const { bytes, at } = await readFooter(storage, file, fileSize)
  verifyFooterChecksum(bytes, at, file)
  const footer = decodeFooter(bytes)
  const totalSectors = guestSectors(footer)
  if (totalSectors > VHD_MAX_SECTORS) {
    throw new ImageError('UNSUPPORTED', `${file}: VHD footer at ${hex(at)}: the disk has ${totalSectors} sectors, above the 2040 GiB QEMU allows (${VHD_MAX_SECTORS})`,
      // -EFBIG without a message: bdrv_open_driver names the file, and qemu-img names it again.
      { file, offset: at, qemuText: `Could not open '${file}': Could not open '${file}': File too large` })
  }
  const fixed = at !== 0
  const sparse = fixed ? undefined : await readSparse(storage, file, fileSize, footer, totalSectors)
  return { footer, footerBytes: bytes, fileSize, virtualSize: totalSectors * SECTOR_SIZE, sparse }
}

/** True for a differencing disk (footer disk type 4), whose parent fills the sectors it lacks. */
export function isDifferencing(layout: VpcLayout): boolean {
  return layout.sparse !== undefined && layout.footer.diskType === VHD_DIFFERENCING
}
