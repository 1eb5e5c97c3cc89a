// The LUKS1 partition header (LUKS On-Disk Format Specification 1.2.3, QEMU crypto/block-luks.c):
// 592 big-endian bytes with 8 key slots of 48 bytes. Pure decode/encode through field tables,
// the checks QEMU makes before trusting it, and the cipher strings it names.
import { struct } from '../binary/struct.js'
import { ImageError } from '../errors.js'
import {
  CIPHER_MODES, HASH_ALGORITHMS, IVGEN_ALGORITHMS, isOneOf,
  type CipherAlgorithm, type CipherMode, type HashAlgorithm, type IvgenAlgorithm,
} from './provider.js'
import { essivCipher, SECTOR_SIZE } from './sector-cipher.js'

/** "LUKS\xba\xbe" (bytes 0-5). */
export const LUKS_MAGIC = Uint8Array.of(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe)
export const LUKS_HEADER_LENGTH = 592
export const LUKS_KEY_SLOT_COUNT = 8
export const LUKS_KEY_SLOT_ENABLED = 0x00ac71f3
export const LUKS_KEY_SLOT_DISABLED = 0x0000dead
export const LUKS_STRIPES = 4000
export const LUKS_SALT_LENGTH = 32
export const LUKS_DIGEST_LENGTH = 20
/** Key material starts 4 KiB into the header area (QCRYPTO_BLOCK_LUKS_KEY_SLOT_OFFSET). */
export const LUKS_KEY_SLOT_AREA_OFFSET = 4096
/** QEMU's floor for PBKDF2 iterations of the master key digest and of key slots. */
export const LUKS_MIN_ITERATIONS = 1000

/** Integer fields of the partition header ("phdr"). */
const HEADER_FIELDS = struct({
  version: [6, 'u16'],
  payloadOffsetSector: [104, 'u32'],
  masterKeyLength: [108, 'u32'],
  masterKeyIterations: [164, 'u32'],
})

/** Byte fields of the partition header: [offset, length]. */
const HEADER_BYTES = {
  magic: [0, 6],
  cipherName: [8, 32],
  cipherMode: [40, 32],
  hashSpec: [72, 32],
  masterKeyDigest: [112, LUKS_DIGEST_LENGTH],
  masterKeySalt: [132, LUKS_SALT_LENGTH],
  uuid: [168, 40],
} as const

/** One key slot (48 bytes from byte 208): integers, and the salt at byte 8. */
const KEY_SLOT_FIELDS = struct({
  active: [0, 'u32'],
  iterations: [4, 'u32'],
  keyOffsetSector: [40, 'u32'],
  stripes: [44, 'u32'],
})
const KEY_SLOTS_OFFSET = 208
const KEY_SLOT_LENGTH = 48
const KEY_SLOT_SALT_OFFSET = 8

/** A key slot as stored; `active` is the raw marker (0x00AC71F3 enabled, 0x0000DEAD disabled). */
export interface LuksKeySlot {
  active: number
  iterations: number
  salt: Uint8Array
  keyOffsetSector: number
  stripes: number
}

/** The decoded partition header; strings are the NUL-terminated text of their fields. */
export interface LuksHeader {
  magic: Uint8Array
  version: number
  cipherName: string
  cipherMode: string
  hashSpec: string
  payloadOffsetSector: number
  masterKeyLength: number
  masterKeyDigest: Uint8Array
  masterKeySalt: Uint8Array
  masterKeyIterations: number
  uuid: string
  keySlots: LuksKeySlot[]
  /** Text fields whose 32/40 bytes hold no NUL (QEMU refuses them). */
  unterminated: string[]
}

const latin1 = (bytes: Uint8Array): string => String.fromCharCode(...bytes)

function text(bytes: Uint8Array): { value: string; terminated: boolean } {
  const nul = bytes.indexOf(0)
  return { value: latin1(nul < 0 ? bytes : bytes.subarray(0, nul)), terminated: nul >= 0 }
}

/** Decodes the first 592 bytes of `bytes` (no validation: see {@link validateLuksHeader}). */
export function decodeLuksHeader(bytes: Uint8Array): LuksHeader {
  if (bytes.length < LUKS_HEADER_LENGTH) throw new ImageError('BAD_KEY', `LUKS header of ${bytes.length} bytes is shorter than ${LUKS_HEADER_LENGTH}`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, LUKS_HEADER_LENGTH)
  const field = (name: keyof typeof HEADER_BYTES) => {
    const [at, length] = HEADER_BYTES[name]
    return bytes.slice(at, at + length)
  }
  const unterminated: string[] = []
  const str = (name: 'cipherName' | 'cipherMode' | 'hashSpec' | 'uuid') => {
    const t = text(field(name))
    if (!t.terminated) unterminated.push(name)
    return t.value
  }
  const keySlots: LuksKeySlot[] = []
  for (let i = 0; i < LUKS_KEY_SLOT_COUNT; i++) {
    const base = KEY_SLOTS_OFFSET + i * KEY_SLOT_LENGTH
    const salt = bytes.slice(base + KEY_SLOT_SALT_OFFSET, base + KEY_SLOT_SALT_OFFSET + LUKS_SALT_LENGTH)
    keySlots.push({ ...KEY_SLOT_FIELDS.decode(view, base), salt })
  }
  return {
    ...HEADER_FIELDS.decode(view),
    magic: field('magic'),
    cipherName: str('cipherName'),
    cipherMode: str('cipherMode'),
    hashSpec: str('hashSpec'),
    masterKeyDigest: field('masterKeyDigest'),
    masterKeySalt: field('masterKeySalt'),
    uuid: str('uuid'),
    keySlots,
    unterminated,
  }
}

/** Encodes `header` into 592 bytes (strings NUL-padded; too long ones are refused). */
export function encodeLuksHeader(header: LuksHeader): Uint8Array {
  const bytes = new Uint8Array(LUKS_HEADER_LENGTH)
  const view = new DataView(bytes.buffer)
  const put = (name: keyof typeof HEADER_BYTES, value: Uint8Array) => {
    const [at, length] = HEADER_BYTES[name]
    if (value.length > length) throw new ImageError('INVALID_ARGUMENT', `LUKS header field ${name} of ${value.length} bytes exceeds ${length}`)
    bytes.set(value, at)
  }
  const ascii = (value: string, room: number) => {
    if (value.length >= room || /[^\x20-\x7e]/.test(value)) throw new ImageError('INVALID_ARGUMENT', `LUKS header text '${value}' does not fit (${room - 1} printable characters at most)`)
    return Uint8Array.from(value, (c) => c.charCodeAt(0))
  }
  put('magic', header.magic)
  HEADER_FIELDS.encode(view, header)
  put('cipherName', ascii(header.cipherName, 32))
  put('cipherMode', ascii(header.cipherMode, 32))
  put('hashSpec', ascii(header.hashSpec, 32))
  put('masterKeyDigest', header.masterKeyDigest)
  put('masterKeySalt', header.masterKeySalt)
  put('uuid', ascii(header.uuid, 40))
  header.keySlots.forEach((slot, i) => {
    const base = KEY_SLOTS_OFFSET + i * KEY_SLOT_LENGTH
    KEY_SLOT_FIELDS.encode(view, slot, base)
    bytes.set(slot.salt, base + KEY_SLOT_SALT_OFFSET)
  })
  return bytes
}

/** Cipher, mode, IV generator and hash a header names (parsed from its strings). */
export interface LuksCipherSpec {
  cipherAlg: CipherAlgorithm
  cipherMode: CipherMode
  ivgenAlg: IvgenAlgorithm
  /** Set only for ESSIV, where it matters (and where `info` shows it). */
  ivgenHashAlg: HashAlgorithm | undefined
  hashAlg: HashAlgorithm
}

function damaged(message: string): ImageError {
  return new ImageError('BAD_KEY', `LUKS header: ${message}`)
}

/** Key material sectors of one slot (qcrypto_block_luks_splitkeylen_sectors). */
export function keySlotSectors(masterKeyLength: number, stripes = LUKS_STRIPES): number {
  const sectors = Math.ceil((masterKeyLength * stripes) / SECTOR_SIZE)
  const per = LUKS_KEY_SLOT_AREA_OFFSET / SECTOR_SIZE
  return Math.ceil(sectors / per) * per
}

/**
 * QEMU's qcrypto_block_luks_check_header: magic, version, terminated strings, and key slots
 * that are sane and lie between the header and the payload without overlapping. BAD_KEY on
 * failure (a damaged header cannot be unlocked).
 */
export function validateLuksHeader(header: LuksHeader): void {
  if (!header.magic.every((b, i) => b === LUKS_MAGIC[i])) throw damaged('Volume is not in LUKS format')
  if (header.version !== 1) throw damaged(`LUKS version ${header.version} is not supported`)
  const names: Record<string, string> = { cipherName: 'cipher name', cipherMode: 'cipher mode', hashSpec: 'hash', uuid: 'uuid' }
  for (const name of header.unterminated) throw damaged(`LUKS header ${names[name]} is not NUL terminated`)
  if (header.masterKeyLength === 0 || header.masterKeyLength > 256) throw damaged(`master key length ${header.masterKeyLength} is out of range (1..256)`)
  if (header.masterKeyIterations === 0) throw damaged('master key iteration count is zero')
  const headerSectors = LUKS_KEY_SLOT_AREA_OFFSET / SECTOR_SIZE
  const slots = header.keySlots
  slots.forEach((slot, i) => {
    if (slot.stripes !== LUKS_STRIPES) throw damaged(`Keyslot ${i} is corrupted (stripes ${slot.stripes} != ${LUKS_STRIPES})`)
    if (slot.active !== LUKS_KEY_SLOT_ENABLED && slot.active !== LUKS_KEY_SLOT_DISABLED) throw damaged(`Keyslot ${i} state (active/disable) is corrupted`)
    if (slot.active === LUKS_KEY_SLOT_ENABLED && slot.iterations === 0) throw damaged(`Keyslot ${i} iteration count is zero`)
    const length = keySlotSectors(header.masterKeyLength, slot.stripes)
    if (slot.keyOffsetSector < headerSectors) throw damaged(`Keyslot ${i} is overlapping with the LUKS header`)
    if (slot.keyOffsetSector + length > header.payloadOffsetSector) throw damaged(`Keyslot ${i} is overlapping with the encrypted payload`)
    for (let j = i + 1; j < slots.length; j++) {
      const other = slots[j]!
      const otherLength = keySlotSectors(header.masterKeyLength, other.stripes)
      if (slot.keyOffsetSector + length > other.keyOffsetSector && other.keyOffsetSector + otherLength > slot.keyOffsetSector) {
        throw damaged(`Keyslots ${i} and ${j} are overlapping in the header`)
      }
    }
  })
}

/** The cipher algorithm for a LUKS cipher name and key length (qcrypto_block_luks_cipher_name_lookup). */
function cipherFromName(name: string, mode: CipherMode, masterKeyLength: number): CipherAlgorithm {
  const keyBytes = mode === 'xts' ? masterKeyLength / 2 : masterKeyLength
  const sizes: Record<string, Record<number, CipherAlgorithm>> = {
    aes: { 16: 'aes-128', 24: 'aes-192', 32: 'aes-256' },
    cast5: { 16: 'cast5-128' },
    serpent: { 16: 'serpent-128', 24: 'serpent-192', 32: 'serpent-256' },
    twofish: { 16: 'twofish-128', 24: 'twofish-192', 32: 'twofish-256' },
  }
  const alg = sizes[name]?.[keyBytes]
  if (alg === undefined) throw damaged(`Algorithm '${name}' with key size ${keyBytes} unsupported`)
  return alg
}

function hashFromName(name: string): HashAlgorithm {
  if (!isOneOf(HASH_ALGORITHMS, name)) throw damaged(`Algorithm '${name}' not supported`)
  return name
}

/** Parses the cipher strings of a header (qcrypto_block_luks_parse_header). */
export function parseLuksCipher(header: LuksHeader): LuksCipherSpec {
  const dash = header.cipherMode.indexOf('-')
  if (dash < 0) throw damaged(`Unexpected cipher mode string format ${header.cipherMode}`)
  const modeName = header.cipherMode.slice(0, dash)
  const ivgenSpec = header.cipherMode.slice(dash + 1)
  const colon = ivgenSpec.indexOf(':')
  const ivgenName = colon < 0 ? ivgenSpec : ivgenSpec.slice(0, colon)
  const ivgenHashName = colon < 0 ? undefined : ivgenSpec.slice(colon + 1)
  if (!isOneOf(CIPHER_MODES, modeName)) throw damaged(`Cipher mode '${modeName}' is not supported`)
  const ivgenHash = ivgenHashName === undefined ? undefined : hashFromName(ivgenHashName)
  const cipherAlg = cipherFromName(header.cipherName, modeName, header.masterKeyLength)
  const hashAlg = hashFromName(header.hashSpec)
  if (!isOneOf(IVGEN_ALGORITHMS, ivgenName)) throw damaged(`IV generator '${ivgenName}' is not supported`)
  if (ivgenName === 'essiv') {
    if (ivgenHash === undefined) throw damaged('Missing IV generator hash specification')
    try {
      essivCipher(cipherAlg, ivgenHash)
    } catch (e) {
      throw damaged((e as Error).message)
    }
  }
  // Like dm-crypt, a hash after plain/plain64 is accepted and ignored.
  return { cipherAlg, cipherMode: modeName, ivgenAlg: ivgenName, ivgenHashAlg: ivgenName === 'essiv' ? ivgenHash : undefined, hashAlg }
}

/** The header strings for a spec: cipher name ("aes") and mode ("xts-plain64", "cbc-essiv:sha256"). */
export function luksCipherStrings(spec: LuksCipherSpec): { cipherName: string; cipherMode: string } {
  const cipherName = spec.cipherAlg.slice(0, spec.cipherAlg.indexOf('-'))
  const ivgen = spec.ivgenAlg === 'essiv' ? `essiv:${spec.ivgenHashAlg ?? 'sha256'}` : spec.ivgenAlg
  return { cipherName, cipherMode: `${spec.cipherMode}-${ivgen}` }
}
