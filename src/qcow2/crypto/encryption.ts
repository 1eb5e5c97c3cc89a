// Encryption of a QCOW2 image (qcow2.rst "crypt_method", "Full disk encryption header
// pointer"): opening LUKS (the header area the FDE extension points at) or legacy AES, reading
// encrypted clusters, and the views the writer encrypts through (LUKS numbers sectors by host
// offset, legacy AES by guest offset: QEMU's crypt_physical_offset).
import type { Extent } from '../../format/extent.js'
import type { ReadableStorage, Storage } from '../../io/storage.js'
import { getExtent, type LookupContext } from '../lookup.js'
import { encryptedStorage, type EncryptedStorage } from '../../crypto/encrypted-storage.js'
import { ImageError, hex } from '../../errors.js'
import type { Qcow2Header } from '../header.js'
import * as spec from '../spec.js'
import { luksInfo, unlockLuks, type LuksVolume } from '../../crypto/luks.js'
import { decodeLuksHeader, LUKS_HEADER_LENGTH, parseLuksCipher, validateLuksHeader } from '../../crypto/luks-header.js'
import { requireCipher, type CryptoProvider } from '../../crypto/provider.js'
import { createSectorCipher, SECTOR_SIZE, type SectorCipher } from '../../crypto/sector-cipher.js'
import type { LuksInfo } from '../../format/info.js'

/** An opened encryption layer of one image. */
export interface Qcow2Encryption {
  format: 'aes' | 'luks'
  /** LUKS numbers sectors by host offset, legacy AES by guest offset (crypt_physical_offset). */
  physicalOffsets: boolean
  /** Undefined when the image was opened without its secret (metadata only, as for info). */
  cipher: SectorCipher | undefined
  /** The LUKS header (format 'luks'). */
  luks: LuksVolume | undefined
}

/** Open options of an image that concern encryption. */
export interface EncryptionOptions {
  /** Ciphers, hashes and PBKDF2 for encrypted images (Node: node/crypto.ts). */
  crypto?: CryptoProvider | undefined
  /** The LUKS passphrase or legacy AES key, asked for only when the image is encrypted. */
  secret?: (() => Promise<Uint8Array | undefined>) | undefined
  /** Open to describe only (qemu-img info's BDRV_O_NO_IO): no secret needed, reading encrypted data fails. */
  metadataOnly?: boolean | undefined
}

/** The error for an encrypted image opened without its secret (QEMU's wording first). */
export function missingSecretError(file: string): ImageError {
  return new ImageError('BAD_KEY', `${file}: Parameter 'encrypt.key-secret' is required for cipher ` +
    `(give it with --object secret,id=ID,data=…|file=… and --image-opts driver=qcow2,file.filename=…,encrypt.key-secret=ID)`, { file })
}

/** Legacy AES (crypt_method 1): AES-128-CBC, key = passphrase cut or zero-padded to 16 bytes. */
function legacyAesCipher(provider: CryptoProvider, secret: Uint8Array): SectorCipher {
  const key = new Uint8Array(16)
  key.set(secret.subarray(0, 16))
  requireCipher(provider, 'aes-128', 'cbc')
  return createSectorCipher(provider, { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, key)
}

/** Reads and checks the LUKS partition header at the FDE extension's offset. */
async function loadLuksVolume(storage: ReadableStorage, area: { offset: number; length: number }, file: string): Promise<LuksVolume> {
  const where = `${file}: LUKS header at ${hex(area.offset)}`
  if (area.length < LUKS_HEADER_LENGTH) throw new ImageError('BAD_KEY', `${where}: area of ${area.length} bytes is too short for a LUKS header (${LUKS_HEADER_LENGTH} bytes)`, { file, offset: area.offset })
  let bytes: Uint8Array
  try {
    bytes = await storage.read(area.offset, LUKS_HEADER_LENGTH)
  } catch (cause) {
    throw new ImageError('BAD_KEY', `${where}: cannot be read (${(cause as Error).message})`, { file, offset: area.offset, cause })
  }
  try {
    const header = decodeLuksHeader(bytes)
    validateLuksHeader(header)
    return { header, spec: parseLuksCipher(header) }
  } catch (cause) {
    if (cause instanceof ImageError) throw new ImageError(cause.code, `${where}: ${cause.message.replace(/^LUKS header: /, '')}`, { file, offset: area.offset, cause })
    throw cause
  }
}

/**
 * Opens the encryption of an image: undefined when it has none. Without `metadataOnly` the
 * secret is required and checked (LUKS); BAD_KEY when it is missing, wrong, or the header is
 * damaged.
 */
export async function openEncryption(storage: ReadableStorage, header: Qcow2Header, options: EncryptionOptions & { writable?: boolean | undefined }): Promise<Qcow2Encryption | undefined> {
  const file = storage.name
  if (header.cryptMethod === spec.CRYPT_NONE) return undefined
  let luks: LuksVolume | undefined
  const area = header.cryptoHeader
  if (header.cryptMethod === spec.CRYPT_LUKS) {
    if (!area) throw new ImageError('CORRUPT', `${file}: LUKS encryption without a full disk encryption header extension`, { file, offset: 32 })
    luks = await loadLuksVolume(storage, area, file)
  }
  const encryption: Qcow2Encryption = { format: luks ? 'luks' : 'aes', physicalOffsets: luks !== undefined, cipher: undefined, luks }
  if (options.metadataOnly && !options.writable) return encryption
  const secret = await options.secret?.()
  if (secret === undefined) throw missingSecretError(file)
  const provider = options.crypto
  if (!provider) throw new ImageError('UNSUPPORTED', `${file}: no crypto provider was given to open an encrypted image`, { file })
  if (!luks || !area) {
    encryption.cipher = legacyAesCipher(provider, secret)
    return encryption
  }
  const read = async (offset: number, length: number): Promise<Uint8Array> => {
    if (offset + length > area.length) throw new ImageError('BAD_KEY', `${file}: LUKS key material at ${hex(area.offset + offset)} lies outside the encryption header area (${area.length} bytes)`, { file, offset: area.offset + offset })
    try {
      return await storage.read(area.offset + offset, length)
    } catch (cause) {
      throw new ImageError('BAD_KEY', `${file}: LUKS key material at ${hex(area.offset + offset)} cannot be read (${(cause as Error).message})`, { file, offset: area.offset + offset, cause })
    }
  }
  try {
    const masterKey = await unlockLuks(provider, luks, read, secret)
    encryption.cipher = createSectorCipher(provider, luks.spec, masterKey)
  } catch (cause) {
    if (cause instanceof ImageError && !cause.message.startsWith(file)) throw new ImageError(cause.code, `${file}: ${cause.message}`, { file, cause, qemuText: cause.qemuText ?? cause.message })
    throw cause
  }
  return encryption
}

/** The `encrypt` facts of `info`. */
export function encryptionInfo(encryption: Qcow2Encryption | undefined): LuksInfo | undefined {
  return encryption?.luks ? luksInfo(encryption.luks) : undefined
}

/**
 * Decrypts `length` guest bytes at `guestOffset` stored from `hostOffset` in `storage` (one
 * contiguous host run). Whole sectors are read (bytes past the end of the file read as zeros,
 * as QEMU's file protocol gives them) and decrypted with their sector numbers.
 */
export async function readEncrypted(encryption: Qcow2Encryption, storage: ReadableStorage, hostOffset: number, guestOffset: number, length: number): Promise<Uint8Array> {
  const cipher = encryption.cipher
  if (!cipher) throw missingSecretError(storage.name)
  const head = guestOffset % SECTOR_SIZE
  const start = hostOffset - head
  const end = Math.ceil((hostOffset + length) / SECTOR_SIZE) * SECTOR_SIZE
  const fileSize = await storage.size()
  const bytes = new Uint8Array(end - start)
  const available = Math.max(0, Math.min(end, fileSize) - start)
  if (available > 0) bytes.set(await storage.read(start, available), 0)
  const sector = (encryption.physicalOffsets ? start : guestOffset - head) / SECTOR_SIZE
  const plain = await cipher.decrypt(bytes, sector)
  return plain.subarray(head, head + length)
}

/** Where the write engine writes guest data. */
export interface DataTarget {
  /** The data storage, for LUKS a view that encrypts at host offsets. */
  data: Storage
  /** Legacy AES: guest data is written here, its sectors numbered by guest offset. */
  guestNumbered: EncryptedStorage | undefined
}

/**
 * What the write engine writes guest data to: for LUKS a view that encrypts at host offsets;
 * for legacy AES (crypt_physical_offset false) one whose writes must say their guest offset,
 * so its plain `write` refuses.
 */
export function dataForWriting(encryption: Qcow2Encryption | undefined, data: Storage): DataTarget {
  if (!encryption) return { data, guestNumbered: undefined }
  if (!encryption.cipher) throw missingSecretError(data.name)
  const view = encryptedStorage(data, encryption.cipher)
  if (encryption.physicalOffsets) return { data: view, guestNumbered: undefined }
  const hostNumbered = async (): Promise<void> => {
    throw new ImageError('UNSUPPORTED', `${data.name}: a legacy AES write without its guest offset`, { file: data.name })
  }
  return { data: { ...view, write: hostNumbered }, guestNumbered: view }
}

/**
 * An extent of an encrypted image as the generic layer sees it: data must be decrypted by
 * readEncoded ('compressed'), and no host offset is shown (QEMU's block status for crypto).
 */
export function hideEncryptedData(extent: Extent): Extent {
  if (extent.kind === 'data') return { kind: 'compressed', length: extent.length }
  if (extent.kind === 'zero') return { kind: 'zero', length: extent.length, hostOffset: undefined }
  if (extent.kind === 'unallocated') return { kind: 'unallocated', length: extent.length }
  return extent
}

/**
 * Decrypted guest bytes `[guestOffset, guestOffset+length)` when they are encrypted data in
 * this layer (one or more host runs); undefined when the range starts in a compressed cluster
 * (never encrypted) so the caller decompresses it.
 */
export async function readDecrypted(encryption: Qcow2Encryption, ctx: LookupContext, guestOffset: number, length: number): Promise<Uint8Array | undefined> {
  const out = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const extent = await getExtent(ctx, guestOffset + done, length - done)
    if (extent.kind !== 'data') {
      if (done === 0) return undefined
      throw new ImageError('INVALID_ARGUMENT', `${ctx.storage.name}: encrypted read at ${guestOffset} of ${length} bytes crosses unencrypted data`)
    }
    out.set(await readEncrypted(encryption, extent.storage, extent.hostOffset, guestOffset + done, extent.length), done)
    done += extent.length
  }
  return out
}
