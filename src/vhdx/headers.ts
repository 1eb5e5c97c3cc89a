// The header pair (MS-VHDX §2.2.2): the valid one with the higher sequence number is current;
// an update writes the other slot with the next sequence number, so a torn write leaves the
// current header intact. QEMU's vhdx_parse_header / vhdx_update_header(s).
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import { HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SIZE, checksumIsValid } from './spec.js'
import { decodeHeader, encodeHeader, type VhdxHeader } from './structures.js'

/** Reads `length` bytes at `offset`, zeros past the end of the file (as QEMU's reads of a file). */
export async function readPadded(storage: ReadableStorage, offset: number, length: number, fileSize: number): Promise<Uint8Array> {
  const out = new Uint8Array(length)
  const available = Math.min(length, fileSize - offset)
  if (available > 0) out.set(await storage.read(offset, available))
  return out
}

/** A random version 4 GUID in text form. */
export function randomGuid(random: (n: number) => Uint8Array): string {
  const u = random(16)
  u[6] = (u[6]! & 0x0f) | 0x40
  u[8] = (u[8]! & 0x3f) | 0x80
  const h = [...u].map((b) => b.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export const defaultRandom = (n: number): Uint8Array => globalThis.crypto.getRandomValues(new Uint8Array(n))

export class HeaderPair {
  /** The two slots as read (their reserved bytes are kept on rewrite). */
  readonly #raw: Uint8Array[]
  #current: number
  #active: VhdxHeader
  /** QEMU's session_guid: the file write GUID of every header this session writes. */
  readonly #sessionGuid: string
  readonly #random: (n: number) => Uint8Array

  private constructor(raw: Uint8Array[], current: number, active: VhdxHeader, random: (n: number) => Uint8Array) {
    this.#raw = raw
    this.#current = current
    this.#active = active
    this.#random = random
    this.#sessionGuid = randomGuid(random)
  }

  get active(): VhdxHeader {
    return this.#active
  }

  /** Which slot is current (0 or 1). */
  get currentSlot(): number {
    return this.#current
  }

  /** vhdx_parse_header: both slots read, checksums and signatures checked, the current one chosen. */
  static async load(storage: ReadableStorage, fileSize: number, random = defaultRandom): Promise<HeaderPair> {
    const raw = [await readPadded(storage, HEADER1_OFFSET, HEADER_SIZE, fileSize), await readPadded(storage, HEADER2_OFFSET, HEADER_SIZE, fileSize)]
    const decoded = raw.map((bytes) => {
      if (!checksumIsValid(bytes, 4)) return undefined
      const h = decodeHeader(bytes)
      return h.signature === 'head' && h.version === 1 ? h : undefined
    })
    const [h1, h2] = decoded
    let current: number
    if (h1 && !h2) current = 0
    else if (!h1 && h2) current = 1
    else if (h1 && h2) {
      if (h1.sequenceNumber > h2.sequenceNumber) current = 0
      else if (h2.sequenceNumber > h1.sequenceNumber) current = 1
      // Disk2VHD writes two identical headers with one sequence number: QEMU takes the first.
      else if (sameBytes(raw[0]!, raw[1]!)) current = 0
      else throw headerError(storage.name, `both headers at ${hex(HEADER1_OFFSET)} and ${hex(HEADER2_OFFSET)} are valid with the same sequence number ${h1.sequenceNumber} but differ`)
    } else {
      throw headerError(storage.name, `neither header (at ${hex(HEADER1_OFFSET)}, ${hex(HEADER2_OFFSET)}) has a valid checksum, the signature 'head' and version 1`)
    }
    return new HeaderPair(raw, current, decoded[current]!, random)
  }

  /**
   * vhdx_update_header: the other slot gets the current header with the next sequence number,
   * this session's file write GUID, a new data write GUID if asked and `logGuid` if given; it
   * is written and flushed, and becomes current.
   */
  async update(storage: Storage, newDataWriteGuid: boolean, logGuid?: string): Promise<void> {
    const slot = 1 - this.#current
    const next: VhdxHeader = {
      ...this.#active,
      signature: 'head',
      sequenceNumber: (this.#active.sequenceNumber + 1n) & 0xffff_ffff_ffff_ffffn,
      fileWriteGuid: this.#sessionGuid,
      dataWriteGuid: newDataWriteGuid ? randomGuid(this.#random) : this.#active.dataWriteGuid,
      logGuid: logGuid ?? this.#active.logGuid,
    }
    const bytes = encodeHeader(next, this.#raw[slot])
    await storage.write(slot === 0 ? HEADER1_OFFSET : HEADER2_OFFSET, bytes)
    await storage.flush()
    this.#raw[slot] = bytes
    this.#current = slot
    this.#active = next
  }

  /** vhdx_update_headers: both slots, so both hold the new state. */
  async updateBoth(storage: Storage, newDataWriteGuid: boolean, logGuid?: string): Promise<void> {
    await this.update(storage, newDataWriteGuid, logGuid)
    await this.update(storage, newDataWriteGuid, logGuid)
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function headerError(file: string, rule: string): ImageError {
  return new ImageError('CORRUPT', `${file}: VHDX headers: ${rule}`, { file, offset: HEADER1_OFFSET, qemuText: `Could not open '${file}': No valid VHDX header found` })
}
