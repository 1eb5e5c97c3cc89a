// The crypto primitives image encryption needs (block ciphers, hashes, PBKDF2, randomness),
// injected by the host like the codecs: node/crypto.ts on Node, so the core imports no node:*.
// Algorithm names are QEMU's (qapi/crypto.json QCryptoCipherAlgorithm, QCryptoHashAlgorithm).
import { ImageError } from '../errors.js'

/** Ciphers QEMU 7.2 offers for LUKS (QCryptoCipherAlgorithm, without the DES family). */
export const CIPHER_ALGORITHMS = [
  'aes-128', 'aes-192', 'aes-256', 'cast5-128',
  'serpent-128', 'serpent-192', 'serpent-256', 'twofish-128', 'twofish-192', 'twofish-256',
] as const
export type CipherAlgorithm = (typeof CIPHER_ALGORITHMS)[number]

/** Block cipher modes (QCryptoCipherMode). */
export const CIPHER_MODES = ['ecb', 'cbc', 'xts', 'ctr'] as const
export type CipherMode = (typeof CIPHER_MODES)[number]

/** IV generators (QCryptoIVGenAlgorithm). */
export const IVGEN_ALGORITHMS = ['plain', 'plain64', 'essiv'] as const
export type IvgenAlgorithm = (typeof IVGEN_ALGORITHMS)[number]

/** Hashes LUKS may name (QCryptoHashAlgorithm in QEMU 7.2). */
export const HASH_ALGORITHMS = ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'ripemd160'] as const
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number]

/** Key bytes per cipher (one key; XTS takes two). */
export const CIPHER_KEY_LENGTH: Readonly<Record<CipherAlgorithm, number>> = {
  'aes-128': 16, 'aes-192': 24, 'aes-256': 32, 'cast5-128': 16,
  'serpent-128': 16, 'serpent-192': 24, 'serpent-256': 32,
  'twofish-128': 16, 'twofish-192': 24, 'twofish-256': 32,
}

/** Block bytes per cipher. */
export function cipherBlockSize(algorithm: CipherAlgorithm): number {
  return algorithm === 'cast5-128' ? 8 : 16
}

/** Digest bytes per hash. */
export const HASH_DIGEST_LENGTH: Readonly<Record<HashAlgorithm, number>> = {
  md5: 16, sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64, ripemd160: 20,
}

/** A keyed cipher in one mode: each call is one message with its own IV. */
export interface CipherContext {
  /** Encrypts whole blocks; `iv` is undefined in ECB mode. Returns new bytes. */
  encrypt(data: Uint8Array, iv: Uint8Array | undefined): Uint8Array
  /** Decrypts whole blocks; `iv` is undefined in ECB mode. Returns new bytes. */
  decrypt(data: Uint8Array, iv: Uint8Array | undefined): Uint8Array
}

/** What the encryption code asks of its host. */
export interface CryptoProvider {
  /** True when `algorithm` can run in `mode` here. */
  hasCipher(algorithm: CipherAlgorithm, mode: CipherMode): boolean
  /** True when `hash` is available here. */
  hasHash(hash: HashAlgorithm): boolean
  /** A cipher keyed with `key` (the cipher's key length, doubled for XTS). */
  cipher(algorithm: CipherAlgorithm, mode: CipherMode, key: Uint8Array): CipherContext
  /** Digest of the concatenation of `parts`. */
  hash(hash: HashAlgorithm, parts: readonly Uint8Array[]): Uint8Array
  /** PBKDF2-HMAC-`hash` (RFC 8018). */
  pbkdf2(hash: HashAlgorithm, password: Uint8Array, salt: Uint8Array, iterations: number, length: number): Promise<Uint8Array>
  /**
   * PBKDF2 iterations per second of CPU time for these input and output lengths, measured
   * over at least `windowMs` milliseconds (QEMU's qcrypto_pbkdf2_count_iters).
   */
  pbkdf2Rate(hash: HashAlgorithm, passwordLength: number, saltLength: number, outputLength: number, windowMs: number): Promise<number>
  /** Cryptographically strong random bytes. */
  randomBytes(length: number): Uint8Array
  /** Short name of the implementation, for messages ("Node.js crypto"). */
  readonly name: string
}

/** Throws UNSUPPORTED unless the provider can run `algorithm` in `mode`. */
export function requireCipher(provider: CryptoProvider, algorithm: CipherAlgorithm, mode: CipherMode): void {
  if (provider.hasCipher(algorithm, mode)) return
  const available = CIPHER_ALGORITHMS.filter((a) => provider.hasCipher(a, mode))
  throw new ImageError('UNSUPPORTED', `cipher ${algorithm} in ${mode} mode is not available in ${provider.name}` +
    (available.length > 0 ? ` (available in ${mode} mode: ${available.join(', ')})` : ''))
}

/** Throws UNSUPPORTED unless the provider has `hash`. */
export function requireHash(provider: CryptoProvider, hash: HashAlgorithm): void {
  if (!provider.hasHash(hash)) throw new ImageError('UNSUPPORTED', `hash ${hash} is not available in ${provider.name}`)
}

/** True when `value` is one of `names` (narrowing helper for parsed strings). */
export function isOneOf<T extends string>(names: readonly T[], value: string): value is T {
  return (names as readonly string[]).includes(value)
}
