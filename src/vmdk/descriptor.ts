// The VMDK text descriptor (VMware Virtual Disk Format 5.0, "The Descriptor File"), read as
// QEMU 7.2's block/vmdk.c reads it: createType, CID, parentCID, parentFileNameHint and the
// extent lines, with the same leniency (lines it does not understand are skipped) and the same
// refusals ("Invalid extent line", "Unsupported image type"), and written as vmdk_co_do_create
// writes it.
import { ImageError } from '../errors.js'

/** The create types QEMU opens from a descriptor file (vmdk_open_desc_file). */
export const DESCRIPTOR_CREATE_TYPES = ['monolithicFlat', 'vmfs', 'vmfsSparse', 'seSparse', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'] as const

/** The extent types QEMU opens (vmdk_parse_extents); others (ZERO, VMFSRDM, …) are skipped. */
export type ExtentType = 'FLAT' | 'SPARSE' | 'VMFS' | 'VMFSSPARSE' | 'SESPARSE'
const EXTENT_TYPES: readonly string[] = ['FLAT', 'SPARSE', 'VMFS', 'VMFSSPARSE', 'SESPARSE']

/** One extent line QEMU opens. */
export interface ExtentLine {
  /** Guest sectors of 512 bytes. */
  sectors: number
  type: ExtentType
  /** The file name as written (relative names are taken relative to the descriptor's directory). */
  fileName: string
  /** FLAT/VMFS: where the guest data starts in the file, in sectors. */
  flatOffsetSectors: number
}

/** Most extents qimg opens from one descriptor (a 64 TiB twoGbMaxExtent disk has 32768). */
export const MAX_EXTENTS = 32768
/** QEMU reads at most this much of a descriptor file (vmdk_read_desc). */
export const MAX_DESCRIPTOR_BYTES = (1 << 20) - 1

/** The text of `bytes` up to the first NUL, as QEMU's C strings see it (Latin-1, byte for byte). */
export function descriptorText(bytes: Uint8Array): string {
  const end = bytes.indexOf(0)
  const text = end < 0 ? bytes : bytes.subarray(0, end)
  let out = ''
  for (let i = 0; i < text.length; i += 8192) out += String.fromCharCode(...text.subarray(i, i + 8192))
  return out
}

/** The bytes of a descriptor text (Latin-1, as {@link descriptorText} read it). */
export function descriptorBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff
  return out
}

/** vmdk_parse_description: the quoted value after `name="` at its first occurrence anywhere. */
export function descriptionValue(desc: string, name: string): string | undefined {
  const at = desc.indexOf(name)
  if (at < 0) return undefined
  const start = at + name.length + 2
  if (start >= desc.length) return undefined
  const end = desc.indexOf('"', start)
  return end < 0 ? undefined : desc.slice(start, end)
}

/**
 * vmdk_read_cid: the hexadecimal number after the first "CID" (or "parentCID") and one more
 * character, as sscanf("%x") reads it: leading white space, an optional 0x, then hex digits.
 */
export function readCid(desc: string, parent: boolean): number | undefined {
  const name = parent ? 'parentCID' : 'CID'
  const at = desc.indexOf(name)
  if (at < 0) return undefined
  const m = /^[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)/.exec(desc.slice(at + name.length + 1))
  if (!m) return undefined
  // strtoul semantics: too large saturates, a minus sign negates modulo 2^32.
  let value = BigInt('0x' + m[2]!)
  if (value > 0xffffffffn) value = 0xffffffffn
  else if (m[1] === '-') value = (-value) & 0xffffffffn
  return Number(value)
}

const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\v' || c === '\f' || c === '\r'

/**
 * sscanf(p, "%10s %lld %10s \"%511[^\n\r\"]\" %lld") as vmdk_parse_extents calls it: the fields
 * it assigned before the first mismatch. Like sscanf, white space includes line ends, so a scan
 * may run into the following lines.
 */
function scanExtentLine(text: string, from: number): { count: number; access: string; sectors: bigint; type: string; fileName: string; flatOffset: bigint } {
  let at = from
  const result = { count: 0, access: '', sectors: 0n, type: '', fileName: '', flatOffset: -1n }
  const skipSpace = () => { while (isSpace(text[at])) at++ }
  const word = (): string | undefined => {
    skipSpace()
    const start = at
    while (at < text.length && at - start < 10 && !isSpace(text[at])) at++
    return at > start ? text.slice(start, at) : undefined
  }
  const integer = (): bigint | undefined => {
    skipSpace()
    const m = /^[+-]?[0-9]+/.exec(text.slice(at, at + 40))
    if (!m) return undefined
    // Digits beyond 40 are still part of the number; strtoll saturates, and so do we.
    let end = at + m[0].length
    while (end < text.length && text[end]! >= '0' && text[end]! <= '9') end++
    const digits = text.slice(at, end)
    at = end
    const value = BigInt(digits)
    const max = (1n << 63n) - 1n
    return value > max ? max : value < -max - 1n ? -max - 1n : value
  }
  const access = word()
  if (access === undefined) return result
  result.access = access
  result.count = 1
  const sectors = integer()
  if (sectors === undefined) return result
  result.sectors = sectors
  result.count = 2
  const type = word()
  if (type === undefined) return result
  result.type = type
  result.count = 3
  skipSpace()
  if (text[at] !== '"') return result
  at++
  const start = at
  while (at < text.length && at - start < 511 && text[at] !== '\n' && text[at] !== '\r' && text[at] !== '"') at++
  if (at === start) return result
  result.fileName = text.slice(start, at)
  result.count = 4
  if (text[at] !== '"') return result
  at++
  const offset = integer()
  if (offset === undefined) return result
  result.flatOffset = offset
  result.count = 5
  return result
}

/** The text of the line starting at `from`, without its line end (QEMU's "Invalid extent line"). */
function lineAt(text: string, from: number): string {
  const end = text.indexOf('\n', from)
  return text.slice(from, end < 0 ? text.length : end)
}

/**
 * vmdk_parse_extents: every line that scans as "RW SECTORS TYPE "FILE" [OFFSET]" with a
 * positive size and a type QEMU opens; RDONLY and NOACCESS lines, and ZERO and other types, are
 * skipped as QEMU skips them. A FLAT line without an offset, or another with one, is refused.
 */
export function parseExtentLines(desc: string, file: string): ExtentLine[] {
  const extents: ExtentLine[] = []
  for (let p = 0; p < desc.length;) {
    const scan = scanExtentLine(desc, p)
    const next = desc.indexOf('\n', p)
    const lineStart = p
    p = next < 0 ? desc.length : next + 1
    if (scan.count < 4 || scan.access !== 'RW') continue
    const invalid = () => {
      const line = lineAt(desc, lineStart)
      return new ImageError('CORRUPT', `${file}: VMDK descriptor: invalid extent line: ${line}`, { file, qemuText: `Invalid extent line: ${line}` })
    }
    let flatOffset = scan.flatOffset
    if (scan.type === 'FLAT') {
      if (scan.count !== 5 || flatOffset < 0n) throw invalid()
    } else if (scan.type === 'VMFS') {
      if (scan.count !== 4) throw invalid()
      flatOffset = 0n
    } else if (scan.count !== 4) {
      throw invalid()
    }
    if (scan.sectors <= 0n || !EXTENT_TYPES.includes(scan.type)) continue
    // Guest and host offsets must stay exact in a double: 2^53 bytes is far beyond any VMDK.
    const limit = BigInt(Number.MAX_SAFE_INTEGER) / 512n
    if (scan.sectors > limit || flatOffset > limit) {
      throw new ImageError('CORRUPT', `${file}: VMDK descriptor: extent line '${lineAt(desc, lineStart)}' has a size or offset beyond ${limit} sectors`, { file })
    }
    if (extents.length >= MAX_EXTENTS) throw new ImageError('UNSUPPORTED', `${file}: VMDK descriptor names more than ${MAX_EXTENTS} extents`, { file })
    extents.push({ sectors: Number(scan.sectors), type: scan.type as ExtentType, fileName: scan.fileName, flatOffsetSectors: Number(flatOffset) })
  }
  return extents
}

/** What a descriptor says (the parts QEMU uses). */
export interface Descriptor {
  createType: string
  extents: ExtentLine[]
}

/** vmdk_open_desc_file: the create type must be one QEMU opens from a descriptor, then the extents. */
export function parseDescriptor(desc: string, file: string): Descriptor {
  const createType = descriptionValue(desc, 'createType')
  if (createType === undefined || createType.length >= 128) {
    throw new ImageError('CORRUPT', `${file}: VMDK descriptor has no createType="…"`, { file, qemuText: 'invalid VMDK image descriptor' })
  }
  if (!(DESCRIPTOR_CREATE_TYPES as readonly string[]).includes(createType)) {
    throw new ImageError('UNSUPPORTED', `${file}: VMDK descriptor createType '${createType}' is not one qimg opens from a descriptor file`, { file, qemuText: `Unsupported image type '${createType}'` })
  }
  return { createType, extents: parseExtentLines(desc, file) }
}

/**
 * vmdk_parent_open: the parentFileNameHint value (after `parentFileNameHint="`), which QEMU
 * takes as the backing file, in format vmdk.
 */
export function parentFileNameHint(desc: string, file: string): string | undefined {
  const at = desc.indexOf('parentFileNameHint')
  if (at < 0) return undefined
  const start = at + 'parentFileNameHint'.length + 2
  const end = desc.indexOf('"', start)
  // QEMU: -EINVAL for an unterminated or too long name (bs->auto_backing_file holds 4096 bytes).
  if (end < 0 || end - start > 4095) throw new ImageError('CORRUPT', `${file}: VMDK descriptor: parentFileNameHint is unterminated or longer than 4095 bytes`, { file, qemuText: 'Invalid argument' })
  return desc.slice(start, end)
}

/**
 * vmdk_write_cid: the descriptor with the first "CID" value replaced by `cid` in lower-case hex
 * and everything from "parentCID" on after it, NUL-padded to `size` bytes (the buffer QEMU writes
 * back whole: DESC_SIZE for an embedded descriptor, the file's length for a descriptor file,
 * whose last byte QEMU's copy always turns into a NUL).
 */
export function withCid(stored: Uint8Array, cid: number, file: string): Uint8Array {
  const size = stored.length
  const buffer = stored.slice()
  buffer[size - 1] = 0
  const desc = descriptorText(buffer)
  const parentAt = desc.indexOf('parentCID')
  if (parentAt < 0) throw new ImageError('CORRUPT', `${file}: VMDK descriptor has no parentCID`, { file, qemuText: 'Invalid argument' })
  const cidAt = desc.indexOf('CID')
  if (cidAt < 0) return buffer
  const text = (desc.slice(0, cidAt + 4) + cid.toString(16) + '\n' + desc.slice(parentAt)).slice(0, size - 1)
  const out = new Uint8Array(size)
  out.set(descriptorBytes(text))
  return out
}

/** What {@link descriptorTemplate} fills in (vmdk_co_do_create's desc_template). */
export interface DescriptorFields {
  cid: number
  parentCid: number
  createType: string
  /** `parentFileNameHint="…"` or ''. */
  parentLine: string
  /** The extent lines, each ending in a line feed. */
  extentLines: string
  hwVersion: string
  cylinders: number
  heads: number
  adapterType: string
  toolsVersion: string
}

/** The descriptor QEMU writes for a new image. */
export function descriptorTemplate(f: DescriptorFields): string {
  return '# Disk DescriptorFile\n' +
    'version=1\n' +
    `CID=${f.cid.toString(16)}\n` +
    `parentCID=${f.parentCid.toString(16)}\n` +
    `createType="${f.createType}"\n` +
    f.parentLine +
    '\n' +
    '# Extent description\n' +
    f.extentLines +
    '\n' +
    '# The Disk Data Base\n' +
    '#DDB\n' +
    '\n' +
    `ddb.virtualHWVersion = "${f.hwVersion}"\n` +
    `ddb.geometry.cylinders = "${f.cylinders}"\n` +
    `ddb.geometry.heads = "${f.heads}"\n` +
    'ddb.geometry.sectors = "63"\n' +
    `ddb.adapterType = "${f.adapterType}"\n` +
    `ddb.toolsVersion = "${f.toolsVersion}"\n`
}
