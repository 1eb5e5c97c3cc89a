// Creating a VMDK as qemu-img 7.2 does (vmdk_co_create_opts, vmdk_co_do_create,
// vmdk_init_extent): the options and their messages, the extent files beside the descriptor
// (NAME-flat.EXT, NAME-s001.EXT, NAME-f001.EXT …), the sparse extents' header and directories,
// and the descriptor from QEMU's template.
import { ImageError } from '../errors.js'
import { SIZE_OPTION, BACKING_FILE_OPTION } from '../format/create-options.js'
import type { CreateOptionDesc, FormatCreateRequest } from '../format/module.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import { descriptorBytes, descriptorTemplate, descriptorText, readCid } from './descriptor.js'
import {
  encodeHeader, SECTOR, VMDK3_MAGIC, VMDK4_COMPRESSION_DEFLATE, VMDK4_FLAG_COMPRESS, VMDK4_FLAG_MARKER, VMDK4_FLAG_NL_DETECT,
  VMDK4_FLAG_RGD, VMDK4_FLAG_ZERO_GRAIN, VMDK4_MAGIC,
} from './header.js'

export const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized'] as const
export const ADAPTER_TYPES = ['ide', 'buslogic', 'lsilogic', 'legacyESX'] as const

/** vmdk_create_opts, in QEMU's order (the order of the "Formatting" line). */
export const VMDK_CREATE_OPTIONS: readonly CreateOptionDesc[] = [
  SIZE_OPTION,
  { name: 'adapter_type', type: 'string', help: 'Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX' },
  BACKING_FILE_OPTION,
  { name: 'backing_fmt', type: 'string', help: "Must be 'vmdk' if present" },
  { name: 'compat6', type: 'bool', help: 'VMDK version 6 image', default: 'off' },
  { name: 'hwversion', type: 'string', help: 'VMDK hardware version', default: 'undefined' },
  { name: 'toolsversion', type: 'string', help: 'VMware guest tools version' },
  { name: 'subformat', type: 'string', help: 'VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ' },
  { name: 'zeroed_grain', type: 'bool', help: 'Enable efficient zero writes using the zeroed-grain GTE feature' },
]

/** VMDK's constant split size for twoGbMaxExtent* (2 GiB). */
const SPLIT_BYTES = 0x80000000
const GRANULARITY_SECTORS = 128
const GTES_PER_GT = 512

const truthy = (v: string | undefined) => v !== undefined && ['on', 'yes', 'true', 'y'].includes(v)

/** filename_decompose: directory part (through the last '/', '\\' or ':'), stem, extension. */
export function decomposeName(filename: string): { path: string; prefix: string; postfix: string } {
  if (filename.length === 0) throw new ImageError('INVALID_ARGUMENT', 'No filename provided')
  let cut = filename.lastIndexOf('/')
  if (cut < 0) cut = filename.lastIndexOf('\\')
  if (cut < 0) cut = filename.lastIndexOf(':')
  const path = cut < 0 ? '' : filename.slice(0, cut + 1)
  const base = filename.slice(cut + 1)
  const dot = base.lastIndexOf('.')
  return dot < 0 ? { path, prefix: base, postfix: '' } : { path, prefix: base.slice(0, dot), postfix: base.slice(dot) }
}

/** g_path_get_basename for the names QEMU puts in extent lines. */
function basename(name: string): string {
  const trimmed = name.replace(/\/+$/, '')
  return trimmed.slice(trimmed.lastIndexOf('/') + 1) || name
}

/** vmdk_init_extent for a sparse extent of `bytes`: header, both directories, tables zeroed. */
export async function initSparseExtent(storage: Storage, bytes: number, compress: boolean, zeroedGrain: boolean): Promise<void> {
  const capacity = Math.floor(bytes / SECTOR)
  const grains = Math.ceil(capacity / GRANULARITY_SECTORS)
  const gtSectors = Math.ceil((GTES_PER_GT * 4) / SECTOR)
  const gtCount = Math.ceil(grains / GTES_PER_GT)
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR)
  const descOffset = 1
  const descSize = 20
  const rgdOffset = descOffset + descSize
  const gdOffset = rgdOffset + gdSectors + gtSectors * gtCount
  const grainOffset = Math.ceil((gdOffset + gdSectors + gtSectors * gtCount) / GRANULARITY_SECTORS) * GRANULARITY_SECTORS
  const flags = VMDK4_FLAG_RGD | VMDK4_FLAG_NL_DETECT | (compress ? VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER : 0) | (zeroedGrain ? VMDK4_FLAG_ZERO_GRAIN : 0)
  await storage.write(0, encodeHeader({
    version: compress ? 3 : zeroedGrain ? 2 : 1,
    flags,
    capacity: BigInt(capacity),
    granularity: BigInt(GRANULARITY_SECTORS),
    descOffset: BigInt(descOffset),
    descSize: BigInt(descSize),
    numGtesPerGt: GTES_PER_GT,
    rgdOffset: BigInt(rgdOffset),
    gdOffset: BigInt(gdOffset),
    grainOffset: BigInt(grainOffset),
    compressAlgorithm: compress ? VMDK4_COMPRESSION_DEFLATE : 0,
  }))
  await storage.truncate(grainOffset * SECTOR)
  const directory = (first: number): Uint8Array => {
    const gd = new Uint8Array(gdSectors * SECTOR)
    const view = new DataView(gd.buffer)
    for (let i = 0; i < gtCount; i++) view.setUint32(i * 4, first + i * gtSectors, true)
    return gd
  }
  if (gdSectors > 0) {
    await storage.write(rgdOffset * SECTOR, directory(rgdOffset + gdSectors))
    await storage.write(gdOffset * SECTOR, directory(gdOffset + gdSectors))
  }
}

/** vmdk_read_cid on the backing file: its descriptor at 0x200 (sparse) or 0 (a descriptor file). */
async function backingCid(backing: ReadableStorage): Promise<number | undefined> {
  const size = await backing.size()
  if (size < 4) return undefined
  const head = await backing.read(0, 4)
  const magic = new DataView(head.buffer, head.byteOffset, 4).getUint32(0)
  const offset = magic === VMDK4_MAGIC || magic === VMDK3_MAGIC ? 0x200 : 0
  const length = Math.max(0, Math.min(20 * SECTOR, size - offset))
  return readCid(descriptorText(length > 0 ? await backing.read(offset, length) : new Uint8Array(0)), false)
}

/** The format name probing gives the backing file (for QEMU's "Invalid backing file format"). */
async function backingFormat(backing: ReadableStorage): Promise<string> {
  const { probeFormat } = await import('../format/probe.js')
  return probeFormat(backing)
}

/** What the options ask for, checked as vmdk_co_create_opts checks them before any file is made. */
export function resolveVmdkOptions(o: ReadonlyMap<string, string>): { subformat: string; adapterType: string; hwVersion: string | undefined; zeroedGrain: boolean } {
  if (o.get('backing_fmt') !== undefined && o.get('backing_fmt') !== 'vmdk') throw new ImageError('INVALID_ARGUMENT', 'backing_file must be a vmdk image')
  const adapterType = o.get('adapter_type') ?? 'ide'
  if (!(ADAPTER_TYPES as readonly string[]).includes(adapterType)) throw new ImageError('INVALID_ARGUMENT', `invalid parameter value: ${adapterType}`)
  const subformat = o.get('subformat') ?? 'monolithicSparse'
  if (!(SUBFORMATS as readonly string[]).includes(subformat)) throw new ImageError('INVALID_ARGUMENT', `invalid parameter value: ${subformat}`)
  let hwVersion = o.get('hwversion')
  if (hwVersion === 'undefined') hwVersion = undefined
  const zeroedGrain = truthy(o.get('zeroed_grain'))
  if (truthy(o.get('compat6'))) {
    if (hwVersion !== undefined) throw new ImageError('INVALID_ARGUMENT', 'compat6 cannot be enabled with hwversion set')
    hwVersion = '6'
  }
  const flat = subformat === 'monolithicFlat' || subformat === 'twoGbMaxExtentFlat'
  if (flat && o.get('backing_file') !== undefined) throw new ImageError('UNSUPPORTED', "Flat image can't have backing file")
  if (flat && zeroedGrain) throw new ImageError('UNSUPPORTED', "Flat image can't enable zeroed grain")
  return { subformat, adapterType, hwVersion, zeroedGrain }
}

/** Writes a new VMDK image (the descriptor or monolithic file in `request.storage`). */
export async function createVmdk(request: FormatCreateRequest): Promise<void> {
  const o = request.options
  const { subformat, adapterType, hwVersion, zeroedGrain } = resolveVmdkOptions(o)
  const { path, prefix, postfix } = decomposeName(request.storage.name)
  const size = Math.ceil(request.size / SECTOR) * SECTOR
  const backingFile = o.get('backing_file')
  const split = subformat === 'twoGbMaxExtentFlat' || subformat === 'twoGbMaxExtentSparse'
  const flat = subformat === 'monolithicFlat' || subformat === 'twoGbMaxExtentFlat'
  const compress = subformat === 'streamOptimized'
  const random = () => {
    const bytes = request.crypto ? request.crypto.randomBytes(4) : globalThis.crypto.getRandomValues(new Uint8Array(4))
    return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true)
  }
  const lineFor = (bytes: number, name: string) =>
    flat ? `RW ${Math.ceil(bytes / SECTOR)} FLAT "${basename(name)}" 0\n` : `RW ${Math.ceil(bytes / SECTOR)} SPARSE "${basename(name)}"\n`

  // The descriptor's file first (for a monolithic sparse image, the one extent).
  const monolithicSparse = !split && !flat
  const descriptorFile = request.storage
  if (monolithicSparse) await initSparseExtent(descriptorFile, size, compress, zeroedGrain)
  else await descriptorFile.truncate(0)
  let extentLines = monolithicSparse ? lineFor(size, descriptorFile.name) : ''

  let parentCid = 0xffffffff
  let parentLine = ''
  if (backingFile !== undefined) {
    if (!request.openFile) throw new ImageError('UNSUPPORTED', `${descriptorFile.name}: cannot open backing file '${backingFile}' here`)
    const backing = await request.openFile(backingFile)
    try {
      const format = await backingFormat(backing)
      if (format !== 'vmdk') throw new ImageError('INVALID_ARGUMENT', `Invalid backing file format: ${format}. Must be vmdk`)
      const cid = await backingCid(backing)
      if (cid === undefined) throw new ImageError('CORRUPT', 'Failed to read parent CID')
      parentCid = cid
    } finally {
      await backing.close()
    }
    parentLine = `parentFileNameHint="${backingFile}"`
  }

  if (!monolithicSparse) {
    const extentBytes = split ? SPLIT_BYTES : size
    if (!request.createFile) throw new ImageError('UNSUPPORTED', `${descriptorFile.name}: this host cannot create the extent files of a ${subformat} image`)
    for (let created = 0, index = 1; created < size; index++) {
      const bytes = Math.min(size - created, extentBytes)
      const name = split ? `${prefix}-${flat ? 'f' : 's'}${String(index).padStart(3, '0')}${postfix}` : `${prefix}-flat${postfix}`
      const extent = await request.createFile(path + name)
      try {
        if (flat) {
          // The new file grows from empty: QEMU's file driver writes its first block.
          await extent.truncate(bytes)
          await extent.write(0, new Uint8Array(bytes < 4096 ? 512 : 4096))
        } else await initSparseExtent(extent, bytes, compress, zeroedGrain)
        await extent.flush()
      } finally {
        await extent.close()
      }
      extentLines += lineFor(bytes, name)
      created += bytes
    }
  }

  const heads = adapterType === 'ide' ? 16 : 255
  const desc = descriptorBytes(descriptorTemplate({
    cid: random(), parentCid, createType: subformat, parentLine, extentLines,
    hwVersion: hwVersion ?? '4', cylinders: Math.floor(size / (63 * heads * SECTOR)), heads, adapterType,
    toolsVersion: o.get('toolsversion') ?? '2147483647',
  }))
  if (monolithicSparse) {
    await descriptorFile.write(0x200, desc)
  } else {
    await descriptorFile.write(0, desc)
    await descriptorFile.truncate(desc.length)
  }
}
