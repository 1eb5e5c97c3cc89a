// A tar archive's member list (POSIX.1-2001 ustar, with GNU long names and pax `path` records),
// read from 512-byte headers without unpacking: each regular file's name, data offset and size.
// Enough to find the disk of an OVA (DMTF DSP0243, "OVF package": a tar of the OVF descriptor
// first, then the files it references).
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'

const BLOCK = 512
/** Members qimg lists before giving up (an OVA holds a handful). */
export const MAX_TAR_MEMBERS = 4096
/** Longest long-name or pax record qimg reads (a name is at most a few KiB). */
const MAX_META_BYTES = 64 * 1024

/** One regular file in the archive. */
export interface TarMember {
  name: string
  /** Where its data starts in the archive, in bytes. */
  offset: number
  size: number
}

const text = (bytes: Uint8Array): string => {
  const end = bytes.indexOf(0)
  let out = ''
  for (const b of end < 0 ? bytes : bytes.subarray(0, end)) out += String.fromCharCode(b)
  return out
}

/** A numeric field: octal digits (space or NUL ended), or base-256 when its top bit is set (GNU). */
function numberField(bytes: Uint8Array, file: string, at: number): number {
  if (bytes[0]! & 0x80) {
    let value = 0
    for (let i = 1; i < bytes.length; i++) value = value * 256 + bytes[i]!
    if (bytes[0] !== 0x80 || !Number.isSafeInteger(value)) throw corrupt(file, at, 'a base-256 size beyond 2^53')
    return value
  }
  const digits = text(bytes).trim()
  if (!/^[0-7]*$/.test(digits)) throw corrupt(file, at, `size field '${digits}' is not octal`)
  return digits === '' ? 0 : parseInt(digits, 8)
}

function corrupt(file: string, offset: number, rule: string): ImageError {
  return new ImageError('CORRUPT', `${file}: tar header at ${offset}: ${rule}`, { file, offset })
}

/** The header checksum (POSIX ustar: bytes summed with the checksum field as spaces). */
function checksumOk(header: Uint8Array): boolean {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!
  const stored = text(header.subarray(148, 156)).trim()
  return /^[0-7]+$/.test(stored) && parseInt(stored, 8) === sum
}

/** The regular files of the tar archive in `storage`, in archive order. */
export async function listTar(storage: ReadableStorage): Promise<TarMember[]> {
  const file = storage.name
  const size = await storage.size()
  const members: TarMember[] = []
  let longName: string | undefined
  for (let at = 0; at + BLOCK <= size;) {
    const header = await storage.read(at, BLOCK)
    if (header.every((b) => b === 0)) break // the end-of-archive blocks
    if (!checksumOk(header)) throw corrupt(file, at, 'bad header checksum (not a tar archive?)')
    const length = numberField(header.subarray(124, 136), file, at)
    const type = String.fromCharCode(header[156]!)
    const dataAt = at + BLOCK
    if (dataAt + length > size) throw corrupt(file, at, `member of ${length} bytes runs past the end of the archive (${size} bytes)`)
    const next = dataAt + Math.ceil(length / BLOCK) * BLOCK
    if (type === 'L' || type === 'x') {
      if (length > MAX_META_BYTES) throw corrupt(file, at, `a ${type === 'L' ? 'long name' : 'pax'} record of ${length} bytes`)
      const meta = text(await storage.read(dataAt, length))
      if (type === 'L') longName = meta
      else {
        const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(meta)
        if (path) longName = path[1]
      }
    } else {
      const isUstar = text(header.subarray(257, 263)).startsWith('ustar')
      const prefix = isUstar ? text(header.subarray(345, 500)) : ''
      const name = longName ?? (prefix ? `${prefix}/` : '') + text(header.subarray(0, 100))
      longName = undefined
      if (type === '0' || type === '\0' || type === '7') {
        if (members.length >= MAX_TAR_MEMBERS) throw new ImageError('UNSUPPORTED', `${file}: more than ${MAX_TAR_MEMBERS} tar members`, { file })
        members.push({ name, offset: dataAt, size: length })
      }
    }
    at = next
  }
  return members
}
