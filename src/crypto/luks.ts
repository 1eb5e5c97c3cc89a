// LUKS1 volumes as QEMU's crypto/block-luks.c makes and opens them: formatting (random master
// key, PBKDF2 iterations from a benchmark, key slot 0 holding the AF-split key), unlocking a
// key slot with a passphrase, and the facts `info` shows.
import { ImageError } from '../errors.js'
import type { LuksInfo } from '../format/info.js'
import { afMerge, afSplit } from './af.js'
import {
  HASH_DIGEST_LENGTH, requireCipher, requireHash,
  type CipherAlgorithm, type CipherMode, type CryptoProvider, type HashAlgorithm, type IvgenAlgorithm,
} from './provider.js'
import { createSectorCipher, essivCipher, masterKeyLength, SECTOR_SIZE } from './sector-cipher.js'
import {
  LUKS_DIGEST_LENGTH, LUKS_KEY_SLOT_AREA_OFFSET, LUKS_KEY_SLOT_COUNT, LUKS_KEY_SLOT_DISABLED,
  LUKS_KEY_SLOT_ENABLED, LUKS_MAGIC, LUKS_MIN_ITERATIONS, LUKS_SALT_LENGTH, LUKS_STRIPES,
  encodeLuksHeader, keySlotSectors, luksCipherStrings,
  type LuksCipherSpec, type LuksHeader, type LuksKeySlot,
} from './luks-header.js'

/** Options of a new LUKS volume (qemu-img -o encrypt.*); defaults are QEMU's. */
export interface LuksCreateOptions {
  /** Default aes-256. */
  cipherAlg?: CipherAlgorithm | undefined
  /** Default xts. */
  cipherMode?: CipherMode | undefined
  /** Default plain64. */
  ivgenAlg?: IvgenAlgorithm | undefined
  /** Hash for ESSIV; default sha256. */
  ivgenHashAlg?: HashAlgorithm | undefined
  /** PBKDF2 and AF hash; default sha256. */
  hashAlg?: HashAlgorithm | undefined
  /** Milliseconds of PBKDF2 work to aim for when unlocking; default 2000. */
  iterTime?: number | undefined
}

/**
 * Most PBKDF2 iterations qimg runs for one key slot or the master key digest (2^26: about a
 * minute of SHA-256 here; QEMU's default iter-time of 2 s gives a few million). QEMU has no limit.
 */
export const LUKS_MAX_ITERATIONS = 1 << 26

/** A LUKS header with its parsed cipher strings. */
export interface LuksVolume {
  header: LuksHeader
  spec: LuksCipherSpec
}

/** Reads `length` bytes at `offset` from the start of the LUKS area. */
export type AreaReader = (offset: number, length: number) => Promise<Uint8Array>

/** Fills in QEMU's defaults and checks the combination (and that the provider can run it). */
export function resolveLuksOptions(options: LuksCreateOptions, provider?: CryptoProvider): LuksCipherSpec & { iterTime: number } {
  const spec: LuksCipherSpec = {
    cipherAlg: options.cipherAlg ?? 'aes-256',
    cipherMode: options.cipherMode ?? 'xts',
    ivgenAlg: options.ivgenAlg ?? 'plain64',
    ivgenHashAlg: undefined,
    hashAlg: options.hashAlg ?? 'sha256',
  }
  if (spec.ivgenAlg === 'essiv') {
    spec.ivgenHashAlg = options.ivgenHashAlg ?? 'sha256'
    essivCipher(spec.cipherAlg, spec.ivgenHashAlg)
  }
  if (spec.cipherMode === 'xts' && spec.cipherAlg === 'cast5-128') throw new ImageError('UNSUPPORTED', 'Unsupported cipher mode xts')
  const materialLength = masterKeyLength(spec.cipherAlg, spec.cipherMode) * LUKS_STRIPES
  if (materialLength % SECTOR_SIZE !== 0) {
    // Valid LUKS (cryptsetup pads the last sector), but QEMU 7.2 asserts on it when creating or opening.
    throw new ImageError('UNSUPPORTED', `${spec.cipherAlg} in ${spec.cipherMode} mode: its LUKS key material (${materialLength} bytes) is not a whole number of ${SECTOR_SIZE}-byte sectors, which qemu-img 7.2 cannot create or open (it aborts); qimg reads such images but does not create them`)
  }
  const iterTime = options.iterTime ?? 2000
  if (!Number.isSafeInteger(iterTime) || iterTime < 0) throw new ImageError('INVALID_ARGUMENT', `encrypt.iter-time must be a non-negative number of milliseconds (got ${iterTime})`)
  if (provider) {
    requireCipher(provider, spec.cipherAlg, spec.cipherMode)
    requireHash(provider, spec.hashAlg)
    if (spec.ivgenHashAlg) requireHash(provider, spec.ivgenHashAlg)
  }
  return { ...spec, iterTime }
}

/**
 * Bytes of the LUKS header area a volume with these options takes (payload offset × 512), as
 * qcrypto_block_calculate_payload_offset computes it for qcow2_measure.
 */
export function luksPayloadLength(options: LuksCreateOptions): number {
  const { cipherAlg, cipherMode } = resolveLuksOptions(options)
  const firstSlotSector = LUKS_KEY_SLOT_AREA_OFFSET / SECTOR_SIZE
  return (firstSlotSector + LUKS_KEY_SLOT_COUNT * keySlotSectors(masterKeyLength(cipherAlg, cipherMode))) * SECTOR_SIZE
}

/** A random version 4 UUID in lower case (qemu_uuid_generate + qemu_uuid_unparse). */
function randomUuid(provider: CryptoProvider): string {
  const b = provider.randomBytes(16)
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/**
 * PBKDF2 iterations taking `iterTime` ms here: the measured rate × iterTime / 1000 (QEMU
 * measures for at least 500 ms; qimg measures for min(500, max(10, iterTime)) ms, so small
 * iter-times format quickly), divided by `divisor`, at least 1000, at most 2^32 − 1.
 */
async function iterationsFor(provider: CryptoProvider, hash: HashAlgorithm, passwordLength: number, outputLength: number, iterTime: number, divisor: number): Promise<number> {
  if (iterTime === 0) return LUKS_MIN_ITERATIONS // rate × 0 is 0 whatever the rate: no benchmark needed
  const rate = await provider.pbkdf2Rate(hash, passwordLength, LUKS_SALT_LENGTH, outputLength, Math.min(500, Math.max(10, iterTime)))
  const iterations = Math.floor(Math.floor((rate * iterTime) / 1000) / divisor)
  if (iterations > 0xffff_ffff) throw new ImageError('INVALID_ARGUMENT', `PBKDF iterations ${iterations} too large for LUKS (encrypt.iter-time ${iterTime} is too long)`)
  return Math.max(iterations, LUKS_MIN_ITERATIONS)
}

/**
 * Formats a LUKS volume protected by `secret` (qcrypto_block_luks_create): returns the header
 * area (partition header and key material, `payloadOffsetSector` × 512 bytes, zero elsewhere)
 * and the master key that encrypts the data.
 */
export async function formatLuks(provider: CryptoProvider, options: LuksCreateOptions, secret: Uint8Array): Promise<{ volume: LuksVolume; area: Uint8Array; masterKey: Uint8Array }> {
  const { iterTime, ...spec } = resolveLuksOptions(options, provider)
  const keyLength = masterKeyLength(spec.cipherAlg, spec.cipherMode)
  const masterKey = provider.randomBytes(keyLength)
  const masterKeySalt = provider.randomBytes(LUKS_SALT_LENGTH)
  // The master key digest gets an eighth of the time (cryptsetup: all 8 slots in iter-time).
  const masterKeyIterations = await iterationsFor(provider, spec.hashAlg, keyLength, LUKS_DIGEST_LENGTH, iterTime, 8)
  const masterKeyDigest = await provider.pbkdf2(spec.hashAlg, masterKey, masterKeySalt, masterKeyIterations, LUKS_DIGEST_LENGTH)
  const slotSectors = keySlotSectors(keyLength)
  const firstSlotSector = LUKS_KEY_SLOT_AREA_OFFSET / SECTOR_SIZE
  const keySlots: LuksKeySlot[] = Array.from({ length: LUKS_KEY_SLOT_COUNT }, (_, i) => ({
    active: LUKS_KEY_SLOT_DISABLED, iterations: 0, salt: new Uint8Array(LUKS_SALT_LENGTH),
    keyOffsetSector: firstSlotSector + i * slotSectors, stripes: LUKS_STRIPES,
  }))
  const payloadOffsetSector = firstSlotSector + LUKS_KEY_SLOT_COUNT * slotSectors
  // Key slot 0: PBKDF2(passphrase) encrypts the AF-split master key.
  const slot = keySlots[0]!
  slot.salt = provider.randomBytes(LUKS_SALT_LENGTH)
  slot.iterations = await iterationsFor(provider, spec.hashAlg, secret.length, keyLength, iterTime, 1)
  slot.active = LUKS_KEY_SLOT_ENABLED
  const slotKey = await provider.pbkdf2(spec.hashAlg, secret, slot.salt, slot.iterations, keyLength)
  const split = afSplit(masterKey, LUKS_STRIPES, (parts) => provider.hash(spec.hashAlg, parts), HASH_DIGEST_LENGTH[spec.hashAlg], (n) => provider.randomBytes(n))
  const material = await createSectorCipher(provider, spec, slotKey).encrypt(split, 0)
  const header: LuksHeader = {
    magic: LUKS_MAGIC.slice(), version: 1, ...luksCipherStrings(spec), hashSpec: spec.hashAlg,
    payloadOffsetSector, masterKeyLength: keyLength, masterKeyDigest, masterKeySalt, masterKeyIterations,
    uuid: randomUuid(provider), keySlots, unterminated: [],
  }
  const area = new Uint8Array(payloadOffsetSector * SECTOR_SIZE)
  area.set(encodeLuksHeader(header), 0)
  area.set(material, slot.keyOffsetSector * SECTOR_SIZE)
  return { volume: { header, spec }, area, masterKey }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * Finds the master key: each active key slot in turn is decrypted with the key PBKDF2 derives
 * from `secret`, merged, and checked against the master key digest (qcrypto_block_luks_find_key).
 * BAD_KEY when no slot opens.
 */
export async function unlockLuks(provider: CryptoProvider, volume: LuksVolume, read: AreaReader, secret: Uint8Array): Promise<Uint8Array> {
  const { header, spec } = volume
  requireHash(provider, spec.hashAlg)
  requireCipher(provider, spec.cipherAlg, spec.cipherMode)
  const keyLength = header.masterKeyLength
  // Checked before any PBKDF2 runs: a hostile header must not keep qimg busy for hours.
  if (header.masterKeyIterations > LUKS_MAX_ITERATIONS) throw new ImageError('BAD_KEY', `master key digest iterations ${header.masterKeyIterations} exceed qimg's limit of ${LUKS_MAX_ITERATIONS}`)
  header.keySlots.forEach((slot, i) => {
    if (slot.active === LUKS_KEY_SLOT_ENABLED && slot.iterations > LUKS_MAX_ITERATIONS) throw new ImageError('BAD_KEY', `Keyslot ${i} iterations ${slot.iterations} exceed qimg's limit of ${LUKS_MAX_ITERATIONS}`)
  })
  const digestLength = HASH_DIGEST_LENGTH[spec.hashAlg]
  const hash = (parts: readonly Uint8Array[]) => provider.hash(spec.hashAlg, parts)
  for (const slot of header.keySlots) {
    if (slot.active !== LUKS_KEY_SLOT_ENABLED) continue
    const slotKey = await provider.pbkdf2(spec.hashAlg, secret, slot.salt, slot.iterations, keyLength)
    const material = await read(slot.keyOffsetSector * SECTOR_SIZE, keyLength * slot.stripes)
    const split = await createSectorCipher(provider, spec, slotKey).decrypt(material, 0)
    const candidate = afMerge(split, keyLength, slot.stripes, hash, digestLength)
    const digest = await provider.pbkdf2(spec.hashAlg, candidate, header.masterKeySalt, header.masterKeyIterations, LUKS_DIGEST_LENGTH)
    if (sameBytes(digest, header.masterKeyDigest)) return candidate
  }
  throw new ImageError('BAD_KEY', 'Invalid password, cannot unlock any keyslot')
}

/** What `info` shows of a LUKS volume (QCryptoBlockInfoLUKS in QEMU 7.2). */
export function luksInfo(volume: LuksVolume): LuksInfo {
  const { header, spec } = volume
  return {
    cipherAlg: spec.cipherAlg,
    cipherMode: spec.cipherMode,
    ivgenAlg: spec.ivgenAlg,
    ivgenHashAlg: spec.ivgenAlg === 'essiv' ? spec.ivgenHashAlg : undefined,
    hashAlg: spec.hashAlg,
    payloadOffset: header.payloadOffsetSector * SECTOR_SIZE,
    masterKeyIters: header.masterKeyIterations,
    uuid: header.uuid,
    slots: header.keySlots.map((slot) => {
      const active = slot.active === LUKS_KEY_SLOT_ENABLED
      return {
        active,
        iters: active ? slot.iterations : undefined,
        stripes: active ? slot.stripes : undefined,
        keyOffset: slot.keyOffsetSector * SECTOR_SIZE,
      }
    }),
  }
}

