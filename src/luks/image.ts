// The standalone LUKS format (QEMU block/crypto.c, driver "luks"): the whole file is a LUKS1
// volume, header and key material first, the encrypted payload from payload_offset. Guest
// sector N is payload sector N, encrypted with IV N. Reads decrypt whatever the file holds
// (holes and bytes past its end read as zero ciphertext, as QEMU's file node gives them);
// zeros are written encrypted, as QEMU's generic fallback writes a zero buffer.
import type { GuestReader, WritableFormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import { layerInfo, type ImageInfo } from '../format/info.js'
import type { ResizeRequest } from '../format/capabilities.js'
import type { FormatOpenContext } from '../format/module.js'
import { ImageError, hex } from '../errors.js'
import { isWritable, type ReadableStorage, type Storage } from '../io/storage.js'
import { RawImage } from '../raw.js'
import { encryptedStorage } from '../crypto/encrypted-storage.js'
import { luksInfo, unlockLuks, type LuksVolume } from '../crypto/luks.js'
import { decodeLuksHeader, LUKS_HEADER_LENGTH, parseLuksCipher, validateLuksHeader } from '../crypto/luks-header.js'
import { createSectorCipher, SECTOR_SIZE, type SectorCipher } from '../crypto/sector-cipher.js'

/** Bytes of encrypted zeros written per request by writeZeroes. */
const ZERO_CHUNK = 1 << 20

/** The error for a luks image opened without its secret (QEMU's words first). */
export function missingKeySecretError(file: string): ImageError {
  return new ImageError('BAD_KEY', `${file}: Parameter 'key-secret' is required for cipher ` +
    `(give it with --object secret,id=ID,data=…|file=… and --image-opts driver=luks,file.filename=…,key-secret=ID)`,
  { file, qemuText: `Could not open '${file}': Parameter 'key-secret' is required for cipher` })
}

/** Reads and checks the LUKS header at the start of the file. */
export async function loadVolume(storage: ReadableStorage): Promise<LuksVolume> {
  const file = storage.name
  const size = await storage.size()
  if (size < LUKS_HEADER_LENGTH) {
    throw new ImageError('BAD_KEY', `${file}: file of ${size} bytes is too short for a LUKS header (${LUKS_HEADER_LENGTH} bytes)`, { file, offset: 0, qemuText: `Could not open '${file}': Volume is not in LUKS format` })
  }
  const bytes = await storage.read(0, LUKS_HEADER_LENGTH)
  try {
    const header = decodeLuksHeader(bytes)
    validateLuksHeader(header)
    return { header, spec: parseLuksCipher(header) }
  } catch (cause) {
    if (cause instanceof ImageError) {
      const text = cause.message.replace(/^LUKS header: /, '')
      throw new ImageError(cause.code, `${file}: ${text}`, { file, offset: 0, cause, qemuText: `Could not open '${file}': ${text}` })
    }
    throw cause
  }
}

/** A guest-offset view of the payload: guest offset 0 is the payload's first byte. */
function payloadView(inner: Storage, offset: number): Storage {
  return {
    name: inner.name,
    size: async () => Math.max(0, (await inner.size()) - offset),
    read: (at, length) => inner.read(offset + at, length),
    write: (at, data) => inner.write(offset + at, data),
    flush: () => inner.flush(),
    truncate: (length) => inner.truncate(offset + length),
    close: async () => undefined,
  }
}

/** A LUKS image over its file. */
export class LuksImage implements WritableFormatDriver {
  readonly format = 'luks'
  readonly backing = undefined
  readonly warnings: string[] = []
  readonly storage: ReadableStorage
  readonly volume: LuksVolume
  /** Bytes before guest offset 0 (payload_offset × 512). */
  readonly payloadOffset: number
  virtualSize: number
  writable = false
  readonly #cipher: SectorCipher | undefined
  readonly #out: Storage | undefined

  private constructor(storage: ReadableStorage, volume: LuksVolume, fileSize: number, cipher: SectorCipher | undefined, writable: boolean) {
    this.storage = storage
    this.volume = volume
    this.payloadOffset = volume.header.payloadOffsetSector * SECTOR_SIZE
    this.virtualSize = LuksImage.#sizeOf(fileSize, this.payloadOffset)
    this.#cipher = cipher
    this.writable = writable
    this.#out = writable && cipher ? encryptedStorage(payloadView(storage as Storage, this.payloadOffset), cipher) : undefined
  }

  /** block_crypto_co_getlength (file length − payload), in whole sectors as the block layer counts. */
  static #sizeOf(fileSize: number, payloadOffset: number): number {
    return Math.ceil(Math.max(0, fileSize - payloadOffset) / SECTOR_SIZE) * SECTOR_SIZE
  }

  static async open(storage: ReadableStorage, context: Pick<FormatOpenContext, 'writable' | 'crypto' | 'secret' | 'metadataOnly'>): Promise<LuksImage> {
    const file = storage.name
    const volume = await loadVolume(storage)
    const fileSize = await storage.size()
    const payloadOffset = volume.header.payloadOffsetSector * SECTOR_SIZE
    // QEMU opens such a file and then fails every size query; qimg says why at once.
    if (payloadOffset > fileSize) {
      throw new ImageError('CORRUPT', `${file}: LUKS payload offset ${hex(payloadOffset)} lies past the end of the file (${fileSize} bytes)`, { file, offset: 104 })
    }
    if (context.writable && !isWritable(storage)) throw new ImageError('READ_ONLY', `${file}: storage is not writable`)
    if (context.metadataOnly && !context.writable) return new LuksImage(storage, volume, fileSize, undefined, false)
    const secret = await context.secret?.()
    if (secret === undefined) throw missingKeySecretError(file)
    const provider = context.crypto
    if (!provider) throw new ImageError('UNSUPPORTED', `${file}: no crypto provider was given to open an encrypted image`, { file })
    const read = async (offset: number, length: number): Promise<Uint8Array> => {
      // Key material past the end of the file reads as zeros (QEMU's block layer pads reads).
      const out = new Uint8Array(length)
      const available = Math.max(0, Math.min(length, fileSize - offset))
      if (available > 0) out.set(await storage.read(offset, available), 0)
      return out
    }
    let cipher: SectorCipher
    try {
      const masterKey = await unlockLuks(provider, volume, read, secret)
      cipher = createSectorCipher(provider, volume.spec, masterKey)
    } catch (cause) {
      if (cause instanceof ImageError && !cause.message.startsWith(file)) throw new ImageError(cause.code, `${file}: ${cause.message}`, { file, cause, qemuText: `Could not open '${file}': ${cause.message}` })
      throw cause
    }
    return new LuksImage(storage, volume, fileSize, cipher, context.writable)
  }

  #writer(): Storage {
    if (!this.writable || !this.#out) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`)
    return this.#out
  }

  #check(offset: number, length: number, what: string): void {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: ${what} of ${length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`)
    }
  }

  /** The whole image is data without a host offset, as QEMU's block status for crypto says. */
  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const length = Math.min(maxLength, this.virtualSize - guestOffset)
    if (length <= 0) throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: offset ${guestOffset} is past the end of the image (${this.virtualSize} bytes)`)
    return { kind: 'compressed', length }
  }

  async readEncoded(guestOffset: number, length: number): Promise<Uint8Array> {
    const cipher = this.#cipher
    if (!cipher) throw missingKeySecretError(this.storage.name)
    this.#check(guestOffset, length, 'read')
    const start = Math.floor(guestOffset / SECTOR_SIZE) * SECTOR_SIZE
    const end = Math.ceil((guestOffset + length) / SECTOR_SIZE) * SECTOR_SIZE
    const bytes = new Uint8Array(end - start)
    const fileSize = await this.storage.size()
    const available = Math.max(0, Math.min(end - start, fileSize - this.payloadOffset - start))
    if (available > 0) bytes.set(await this.storage.read(this.payloadOffset + start, available), 0)
    const plain = await cipher.decrypt(bytes, start / SECTOR_SIZE)
    return plain.subarray(guestOffset - start, guestOffset - start + length)
  }

  async readEncodedInto(guestOffset: number, out: Uint8Array): Promise<void> {
    out.set(await this.readEncoded(guestOffset, out.length))
  }

  async consultHostHoles(): Promise<boolean> {
    return false
  }

  async write(offset: number, data: Uint8Array, _readGuest?: GuestReader): Promise<void> {
    this.#check(offset, data.length, 'write')
    await this.#writer().write(offset, data)
  }

  /** Encrypted zeros (block/crypto.c has no write-zeroes: the block layer writes a zero buffer). */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#check(offset, length, 'write')
    const out = this.#writer()
    for (let at = offset; at < offset + length;) {
      const n = Math.min(ZERO_CHUNK, offset + length - at)
      await out.write(at, new Uint8Array(n))
      at += n
    }
  }

  /**
   * Discard goes to the file (block_crypto_co_pdiscard): whole sectors inside the range are
   * punched there, and read back as decrypted zero ciphertext, as in QEMU.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.#check(offset, length, 'discard')
    this.#writer()
    const start = Math.ceil(offset / SECTOR_SIZE) * SECTOR_SIZE
    const end = Math.floor((offset + length) / SECTOR_SIZE) * SECTOR_SIZE
    if (end > start) await (this.storage as Storage).discard?.(this.payloadOffset + start, end - start)
  }

  async flush(): Promise<void> {
    if (this.writable) await (this.storage as Storage).flush()
  }

  /**
   * block_crypto_co_truncate: the file becomes payload + `newSize` bytes (not rounded), with the
   * file's preallocation (which writes plain zeros: the new area reads as decrypted zeros).
   */
  async resize(newSize: number, options: Pick<ResizeRequest, 'preallocation'>): Promise<void> {
    this.#writer()
    const file = await RawImage.open(this.storage, { writable: true })
    await file.resize(this.payloadOffset + newSize, options)
    this.virtualSize = LuksImage.#sizeOf(this.payloadOffset + newSize, this.payloadOffset)
    await this.flush()
  }

  info(): Promise<ImageInfo> {
    return layerInfo(this, { encrypted: true, formatSpecific: { type: 'luks', data: luksInfo(this.volume) } })
  }

  async close(): Promise<void> {
    await this.storage.close()
  }
}
