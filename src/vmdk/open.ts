// Opening a VMDK as QEMU's vmdk_open does: a sparse file (its own single extent, or a
// descriptor embedded in it), or a descriptor file whose extents are files the image names,
// opened through the caller's file-reference policy; then parentFileNameHint, CID, parentCID.
import type { FormatOpenContext } from '../format/module.js'
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import {
  descriptorText, MAX_DESCRIPTOR_BYTES, parentFileNameHint, parseDescriptor, readCid, type ExtentLine,
} from './descriptor.js'
import { SECTOR, VMDK3_MAGIC, VMDK4_MAGIC } from './header.js'
import { VmdkImage, type PlacedExtent } from './image.js'
import { openCowd } from './cowd.js'
import { SeSparseExtent } from './sesparse.js'
import { readPadded, readSparseHead, SparseExtent } from './sparse.js'

/** What opening needs from the chain opener. */
export type VmdkOpenContext = Pick<FormatOpenContext, 'writable' | 'codecs' | 'compressors' | 'openReferenced'>

/** Bytes QEMU reads for CID, parentCID and parentFileNameHint (DESC_SIZE). */
const DESC_SIZE = 20 * SECTOR
/** Guest sectors qimg addresses exactly. */
const MAX_GUEST_SECTORS = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR)

async function magicOf(storage: ReadableStorage, fileSize: number): Promise<number> {
  // vmdk_read_desc: every VMDK file, descriptor or sparse, has at least 4 bytes.
  if (fileSize < 4) throw new ImageError('NOT_AN_IMAGE', `${storage.name}: ${fileSize} bytes is too small for a VMDK file`, { file: storage.name, qemuText: 'File is too small, not a valid image' })
  const head = await storage.read(0, 4)
  return new DataView(head.buffer, head.byteOffset, 4).getUint32(0)
}

/** vmdk_read_desc: at most 1 MiB − 1 of text from `offset`. */
async function readDescriptor(storage: ReadableStorage, fileSize: number, offset: number): Promise<string> {
  return descriptorText(await readPadded(storage, fileSize, offset, Math.min(MAX_DESCRIPTOR_BYTES, Math.max(0, fileSize - offset))))
}

/** A sparse file as one extent (vmdk_open_sparse on a KDMV file). */
async function openSparseFile(storage: ReadableStorage, fileSize: number, writable: boolean): Promise<SparseExtent | { descriptorAt: number }> {
  const magic = await magicOf(storage, fileSize)
  if (magic === VMDK3_MAGIC) return openCowd(storage, { writable, fileSize })
  if (magic !== VMDK4_MAGIC) throw new ImageError('NOT_AN_IMAGE', `${storage.name}: not a VMDK sparse extent (magic ${magic.toString(16)})`, { file: storage.name, qemuText: 'Image not in VMDK format' })
  const head = await readSparseHead(storage, fileSize)
  if (head.kind === 'descriptor') return { descriptorAt: head.offset }
  return SparseExtent.open(storage, head.header, { writable, fileSize })
}

/** vmdk_parse_extents: every extent line's file opened and placed after the one before. */
async function openExtents(storage: ReadableStorage, lines: ExtentLine[], context: VmdkOpenContext, opened: ReadableStorage[]): Promise<{ extents: PlacedExtent[]; compressed: boolean }> {
  const extents: PlacedExtent[] = []
  let guestStart = 0
  let compressed = false
  for (const line of lines) {
    if (!context.openReferenced) {
      throw new ImageError('DENIED', `${storage.name}: the image names extent file '${line.fileName}' and opening files named by images is not allowed`, { file: storage.name })
    }
    const file = await context.openReferenced(line.fileName, 'extent file', { writable: context.writable })
    opened.push(file)
    let placed: PlacedExtent
    if (line.type === 'FLAT' || line.type === 'VMFS') {
      placed = { kind: 'flat', storage: file, sectors: line.sectors, hostStart: line.flatOffsetSectors * SECTOR, type: line.type, guestStart }
    } else if (line.type === 'SPARSE' || line.type === 'VMFSSPARSE') {
      const sparse = await openSparseFile(file, await file.size(), context.writable)
      if (!(sparse instanceof SparseExtent)) throw new ImageError('UNSUPPORTED', `${file.name}: a VMDK extent that is itself a descriptor is not supported`, { file: file.name })
      // QEMU takes a sparse extent's size from its header, not from the descriptor line.
      placed = { kind: 'sparse', sparse, sectors: sparse.sectors, type: line.type, guestStart }
      compressed ||= sparse.compressed
    } else {
      const sparse = await SeSparseExtent.open(file, { writable: context.writable, fileSize: await file.size() })
      placed = { kind: 'sesparse', sparse, sectors: sparse.sectors, type: line.type, guestStart }
    }
    guestStart += placed.sectors
    if (guestStart > MAX_GUEST_SECTORS) throw new ImageError('CORRUPT', `${storage.name}: VMDK extents add up to more than ${MAX_GUEST_SECTORS} sectors`, { file: storage.name })
    extents.push(placed)
  }
  return { extents, compressed }
}

/** Opens `storage` as a VMDK image. */
export async function openVmdk(storage: ReadableStorage, context: VmdkOpenContext): Promise<VmdkImage> {
  const fileSize = await storage.size()
  const magic = await magicOf(storage, fileSize)
  const opened: ReadableStorage[] = []
  try {
    let extents: PlacedExtent[]
    let createType: string
    let descOffset: number
    if (magic === VMDK4_MAGIC || magic === VMDK3_MAGIC) {
      const sparse = await openSparseFile(storage, fileSize, context.writable)
      if (sparse instanceof SparseExtent) {
        extents = [{ kind: 'sparse', sparse, sectors: sparse.sectors, type: '', guestStart: 0 }]
        // vmdk_open_vmfs_sparse sets no create type: QEMU's info prints it empty.
        createType = magic === VMDK3_MAGIC ? '' : sparse.compressed ? 'streamOptimized' : 'monolithicSparse'
      } else {
        const desc = parseDescriptor(await readDescriptor(storage, fileSize, sparse.descriptorAt), storage.name)
        const found = await openExtents(storage, desc.extents, context, opened)
        extents = found.extents
        createType = found.compressed ? 'streamOptimized' : desc.createType
      }
      // vmdk_open: a sparse file's descriptor is read at 0x200 whatever its header says.
      descOffset = 0x200
    } else {
      const desc = parseDescriptor(await readDescriptor(storage, fileSize, 0), storage.name)
      const found = await openExtents(storage, desc.extents, context, opened)
      extents = found.extents
      createType = found.compressed ? 'streamOptimized' : desc.createType
      descOffset = 0
    }
    // vmdk_parent_open and vmdk_read_cid read DESC_SIZE bytes at the descriptor's offset.
    const desc = descriptorText(await readPadded(storage, fileSize, descOffset, DESC_SIZE))
    const parent = parentFileNameHint(desc, storage.name)
    const cid = readCid(desc, false)
    const parentCid = readCid(desc, true)
    if (cid === undefined || parentCid === undefined) {
      throw new ImageError('CORRUPT', `${storage.name}: VMDK descriptor at ${descOffset} has no ${cid === undefined ? 'CID' : 'parentCID'}`, { file: storage.name, qemuText: 'Invalid argument' })
    }
    for (const e of extents) {
      if (e.kind === 'flat' && (await e.storage.size()) < e.hostStart + e.sectors * SECTOR) {
        // QEMU reads zeros past the end of a short flat file; qimg holds extents to their files.
        throw new ImageError('CORRUPT', `${e.storage.name}: VMDK flat extent of ${e.sectors} sectors at sector ${e.hostStart / SECTOR} runs past the end of the file`, { file: e.storage.name })
      }
    }
    return new VmdkImage({
      storage, extents, createType, cid, parentCid,
      backing: parent === undefined ? undefined : { name: parent, format: 'vmdk' },
      descOffset, writable: context.writable, codecs: context.codecs, compressors: context.compressors, extentFiles: opened,
    })
  } catch (e) {
    for (const f of opened) await f.close().catch(() => undefined)
    throw e
  }
}
