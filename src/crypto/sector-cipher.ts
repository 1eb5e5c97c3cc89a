// Sector encryption as QEMU's qcrypto_block_cipher_{en,de}crypt_helper does it: the data is cut
// into 512-byte sectors (the last may be shorter, as for LUKS key material), each encrypted on its
// own with an IV from the sector number (crypto/ivgen-plain.c, ivgen-plain64.c, ivgen-essiv.c).
import { ImageError } from '../errors.js'
import { xtsSectors } from './xts.js'
import {
  CIPHER_KEY_LENGTH, HASH_DIGEST_LENGTH, cipherBlockSize, requireCipher, requireHash,
  type CipherAlgorithm, type CipherContext, type CipherMode, type CryptoProvider, type HashAlgorithm, type IvgenAlgorithm,
} from './provider.js'

/** Bytes per encryption sector (QCRYPTO_BLOCK_LUKS_SECTOR_SIZE, QCRYPTO_BLOCK_QCOW_SECTOR_SIZE). */
export const SECTOR_SIZE = 512

/** Encrypts and decrypts runs of sectors; `firstSector` numbers the first one. */
export interface SectorCipher {
  encrypt(data: Uint8Array, firstSector: number): Promise<Uint8Array>
  decrypt(data: Uint8Array, firstSector: number): Promise<Uint8Array>
}

/** Cipher, mode and IV generator of a volume. */
export interface SectorCipherSpec {
  cipherAlg: CipherAlgorithm
  cipherMode: CipherMode
  ivgenAlg: IvgenAlgorithm
  /** Hash for ESSIV (ignored by the other generators). */
  ivgenHashAlg: HashAlgorithm | undefined
}

/** Master key bytes for a cipher in a mode (XTS takes two keys). */
export function masterKeyLength(cipherAlg: CipherAlgorithm, cipherMode: CipherMode): number {
  return CIPHER_KEY_LENGTH[cipherAlg] * (cipherMode === 'xts' ? 2 : 1)
}

/**
 * The cipher ESSIV encrypts sector numbers with: the volume's cipher when its key length equals
 * the hash's digest length, else the AES variant that matches (qcrypto_block_luks_essiv_cipher).
 */
export function essivCipher(cipherAlg: CipherAlgorithm, hash: HashAlgorithm): CipherAlgorithm {
  const digestLength = HASH_DIGEST_LENGTH[hash]
  if (CIPHER_KEY_LENGTH[cipherAlg] === digestLength) return cipherAlg
  const family = cipherAlg.slice(0, cipherAlg.indexOf('-'))
  const match = (['128', '192', '256'] as const)
    .map((bits) => `${family}-${bits}` as CipherAlgorithm)
    .find((alg) => alg in CIPHER_KEY_LENGTH && CIPHER_KEY_LENGTH[alg] === digestLength)
  if (family === 'cast5') throw new ImageError('UNSUPPORTED', `Cipher ${cipherAlg} not supported with essiv`)
  if (match === undefined) {
    const name = family === 'aes' ? 'AES' : family === 'serpent' ? 'Serpent' : 'Twofish'
    throw new ImageError('UNSUPPORTED', `No ${name} cipher with key size ${digestLength} available`)
  }
  return match
}

/** IV bytes of a mode (0 for ECB). */
function ivLength(cipherAlg: CipherAlgorithm, cipherMode: CipherMode): number {
  return cipherMode === 'ecb' ? 0 : cipherBlockSize(cipherAlg)
}

/** Writes the little-endian sector number (64 or 32 bits) at the start of `out`. */
function putSector(out: Uint8Array, at: number, sector: number, bytes: 4 | 8): void {
  const view = new DataView(out.buffer, out.byteOffset + at, bytes)
  view.setUint32(0, sector % 0x1_0000_0000, true)
  if (bytes === 8) view.setUint32(4, Math.floor(sector / 0x1_0000_0000), true)
}

/** The IVs of `count` sectors from `firstSector`, `ivSize` bytes each, back to back. */
type IvGenerator = (firstSector: number, count: number) => Uint8Array

function ivGenerator(provider: CryptoProvider, spec: SectorCipherSpec, key: Uint8Array, ivSize: number): IvGenerator {
  switch (spec.ivgenAlg) {
    case 'plain':
    case 'plain64': {
      const width = spec.ivgenAlg === 'plain' ? 4 : 8
      return (first, count) => {
        const ivs = new Uint8Array(count * ivSize)
        for (let i = 0; i < count; i++) putSector(ivs, i * ivSize, first + i, width)
        return ivs
      }
    }
    case 'essiv': {
      if (spec.ivgenHashAlg === undefined) throw new ImageError('BAD_KEY', 'Missing IV generator hash specification')
      requireHash(provider, spec.ivgenHashAlg)
      const essivAlg = essivCipher(spec.cipherAlg, spec.ivgenHashAlg)
      requireCipher(provider, essivAlg, 'ecb')
      // The ESSIV key is the hash of the whole key, cut to the ESSIV cipher's key length.
      const salt = provider.hash(spec.ivgenHashAlg, [key]).subarray(0, CIPHER_KEY_LENGTH[essivAlg])
      const ecb = provider.cipher(essivAlg, 'ecb', salt)
      const block = cipherBlockSize(essivAlg)
      return (first, count) => {
        const plain = new Uint8Array(count * block)
        for (let i = 0; i < count; i++) putSector(plain, i * block, first + i, block >= 8 ? 8 : 4)
        const encrypted = ecb.encrypt(plain, undefined)
        if (block === ivSize) return encrypted
        const ivs = new Uint8Array(count * ivSize)
        for (let i = 0; i < count; i++) ivs.set(encrypted.subarray(i * block, i * block + Math.min(block, ivSize)), i * ivSize)
        return ivs
      }
    }
  }
}

/**
 * A sector cipher for `spec` keyed with `key` (the master key, or a LUKS slot key for key
 * material). Throws UNSUPPORTED when the provider lacks the cipher or hash.
 */
export function createSectorCipher(provider: CryptoProvider, spec: SectorCipherSpec, key: Uint8Array): SectorCipher {
  requireCipher(provider, spec.cipherAlg, spec.cipherMode)
  const expected = masterKeyLength(spec.cipherAlg, spec.cipherMode)
  if (key.length !== expected) throw new ImageError('BAD_KEY', `${spec.cipherAlg}-${spec.cipherMode} needs a ${expected}-byte key, got ${key.length}`)
  const context: CipherContext = provider.cipher(spec.cipherAlg, spec.cipherMode, key)
  const ivSize = ivLength(spec.cipherAlg, spec.cipherMode)
  const ivs = ivSize === 0 ? undefined : ivGenerator(provider, spec, key, ivSize)
  const block = cipherBlockSize(spec.cipherAlg)
  // XTS over whole sectors goes through two ECB contexts in bulk (xtsSectors) when the provider
  // has ECB for the cipher: the same bytes, without a cipher context per sector.
  const half = CIPHER_KEY_LENGTH[spec.cipherAlg]
  const bulk = spec.cipherMode === 'xts' && block === 16 && provider.hasCipher(spec.cipherAlg, 'ecb')
    ? { data: provider.cipher(spec.cipherAlg, 'ecb', key.subarray(0, half)), tweak: provider.cipher(spec.cipherAlg, 'ecb', key.subarray(half)) }
    : undefined
  const run = (data: Uint8Array, firstSector: number, encrypt: boolean): Uint8Array => {
    if (data.length % block !== 0) throw new ImageError('INVALID_ARGUMENT', `encrypted data of ${data.length} bytes is not a whole number of ${block}-byte blocks`)
    if (!ivs) return encrypt ? context.encrypt(data, undefined) : context.decrypt(data, undefined)
    const count = Math.ceil(data.length / SECTOR_SIZE)
    const allIvs = ivs(firstSector, count)
    if (bulk && data.length % SECTOR_SIZE === 0) {
      const out = xtsSectors(bulk.data, bulk.tweak, data, allIvs, SECTOR_SIZE, encrypt)
      if (out) return out
    }
    const out = new Uint8Array(data.length)
    for (let i = 0; i < count; i++) {
      const piece = data.subarray(i * SECTOR_SIZE, Math.min(data.length, (i + 1) * SECTOR_SIZE))
      const iv = allIvs.subarray(i * ivSize, (i + 1) * ivSize)
      out.set(encrypt ? context.encrypt(piece, iv) : context.decrypt(piece, iv), i * SECTOR_SIZE)
    }
    return out
  }
  return {
    encrypt: async (data, firstSector) => run(data, firstSector, true),
    decrypt: async (data, firstSector) => run(data, firstSector, false),
  }
}
