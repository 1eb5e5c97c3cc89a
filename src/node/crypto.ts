// The crypto provider on Node: block ciphers, hashes, PBKDF2 and randomness from node:crypto
// (OpenSSL). No cipher is written here; XTS for key sizes OpenSSL lacks (aes-192) is built on
// its ECB mode as QEMU builds XTS (crypto/xts.ts).
import { promisify } from 'node:util'
import { ImageError } from '../errors.js'
import type { CipherAlgorithm, CipherContext, CipherMode, CryptoProvider, HashAlgorithm } from '../crypto/provider.js'
import { CIPHER_KEY_LENGTH } from '../crypto/provider.js'
import { xtsFromEcb } from '../crypto/xts.js'
import { lazyBuiltin } from './lazy-builtin.js'

type NodeCrypto = typeof import('node:crypto')
const crypto = lazyBuiltin<NodeCrypto>('node:crypto')
let loaded: { pbkdf2Async: (password: Uint8Array, salt: Uint8Array, iterations: number, length: number, hash: string) => Promise<Buffer>; ciphers: Set<string>; hashes: Set<string> } | undefined

/** What is derived from node:crypto once it is loaded. */
function derived(): NonNullable<typeof loaded> {
  return (loaded ??= { pbkdf2Async: promisify(crypto().pbkdf2), ciphers: new Set(crypto().getCiphers()), hashes: new Set(crypto().getHashes()) })
}

/** One-shot hashing (Node ≥ 20.12), when this Node has it. */
function oneShotHash(): ((algorithm: string, data: Uint8Array, encoding: 'buffer') => Buffer) | undefined {
  return (crypto() as { hash?: (algorithm: string, data: Uint8Array, encoding: 'buffer') => Buffer }).hash
}

/** OpenSSL's name for a cipher in a mode, e.g. aes-256-xts, cast5-cbc. */
function opensslName(algorithm: CipherAlgorithm, mode: CipherMode): string {
  if (algorithm === 'cast5-128') return `cast5-${mode}`
  return `${algorithm}-${mode}`
}

/** A plain Uint8Array over a Buffer's bytes (Buffer's slice shares memory; Uint8Array's copies). */
function plain(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

function nativeCipher(name: string, key: Uint8Array): CipherContext {
  const run = (data: Uint8Array, iv: Uint8Array | undefined, encrypt: boolean): Uint8Array => {
    const context = encrypt ? crypto().createCipheriv(name, key, iv ?? null) : crypto().createDecipheriv(name, key, iv ?? null)
    context.setAutoPadding(false)
    const head = context.update(data)
    const tail = context.final()
    return plain(tail.length === 0 ? head : Buffer.concat([head, tail]))
  }
  return {
    encrypt: (data, iv) => run(data, iv, true),
    decrypt: (data, iv) => run(data, iv, false),
  }
}

function hasNative(algorithm: CipherAlgorithm, mode: CipherMode): boolean {
  return derived().ciphers.has(opensslName(algorithm, mode))
}

/** Thread CPU time is what QEMU measures; the process's is the nearest Node offers. */
function cpuMilliseconds(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/** node:crypto as a {@link CryptoProvider}. */
export const nodeCrypto: CryptoProvider = {
  name: `Node.js crypto (OpenSSL ${process.versions.openssl})`,
  hasCipher(algorithm, mode) {
    if (hasNative(algorithm, mode)) return true
    return mode === 'xts' && algorithm !== 'cast5-128' && hasNative(algorithm, 'ecb')
  },
  hasHash: (hash) => derived().hashes.has(hash),
  cipher(algorithm, mode, key) {
    if (!this.hasCipher(algorithm, mode)) throw new ImageError('UNSUPPORTED', `cipher ${algorithm} in ${mode} mode is not available in ${this.name}`)
    const keyLength = CIPHER_KEY_LENGTH[algorithm]
    if (mode === 'xts' && !hasNative(algorithm, mode)) {
      return xtsFromEcb(nativeCipher(opensslName(algorithm, 'ecb'), key.subarray(0, keyLength)), nativeCipher(opensslName(algorithm, 'ecb'), key.subarray(keyLength)))
    }
    return nativeCipher(opensslName(algorithm, mode), key)
  },
  hash(hash: HashAlgorithm, parts) {
    // One-shot hashing (Node ≥ 20.12) is several times cheaper for the small AF blocks.
    const oneShot = oneShotHash()
    if (oneShot) return plain(oneShot(hash, parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer'))
    const h = crypto().createHash(hash)
    for (const part of parts) h.update(part)
    return plain(h.digest())
  },
  async pbkdf2(hash, password, salt, iterations, length) {
    return plain(await derived().pbkdf2Async(password, salt, iterations, length, hash))
  },
  async pbkdf2Rate(hash, passwordLength, saltLength, outputLength, windowMs) {
    // qcrypto_pbkdf2_count_iters: grow the trial until it runs longer than the window.
    const password = crypto().randomBytes(passwordLength)
    const salt = crypto().randomBytes(saltLength)
    let iterations = 1 << 12 // QEMU starts at 2^15; smaller trials keep short iter-times quick
    for (;;) {
      const start = cpuMilliseconds()
      crypto().pbkdf2Sync(password, salt, iterations, outputLength, hash)
      const elapsed = cpuMilliseconds() - start
      if (elapsed > windowMs) return (iterations * 1000) / elapsed
      if (elapsed <= 0) iterations *= 2
      else if (elapsed < windowMs / 5) iterations *= 10
      else iterations = Math.ceil((iterations * 2 * windowMs) / elapsed)
    }
  },
  randomBytes: (length) => plain(crypto().randomBytes(length)),
}
