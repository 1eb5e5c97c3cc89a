// The crypto provider where node:crypto is absent (browsers): AES from @noble/ciphers, hashes and
// PBKDF2 from @noble/hashes, randomness from WebCrypto's getRandomValues. WebCrypto itself has
// no AES-XTS and no raw ECB, so XTS is built on the JS ECB exactly as on Node (crypto/xts.ts).
// Only AES is offered; images using another cipher fail with UNSUPPORTED naming what is here.
import { cbc, ctr, ecb } from '@noble/ciphers/aes.js'
import { md5, ripemd160, sha1 } from '@noble/hashes/legacy.js'
import { pbkdf2, pbkdf2Async } from '@noble/hashes/pbkdf2.js'
import { sha224, sha256, sha384, sha512 } from '@noble/hashes/sha2.js'
import { ImageError } from '../errors.js'
import { CIPHER_KEY_LENGTH, type CipherAlgorithm, type CipherContext, type CipherMode, type CryptoProvider, type HashAlgorithm } from '../crypto/provider.js'
import { xtsFromEcb } from '../crypto/xts.js'

const HASHES = { md5, sha1, sha224, sha256, sha384, sha512, ripemd160 } as const

const isAes = (algorithm: CipherAlgorithm): boolean => algorithm.startsWith('aes-')

/** One mode of AES; a noble cipher object serves one message, so each call makes its own. */
function aesContext(mode: CipherMode, key: Uint8Array): CipherContext {
  const run = (data: Uint8Array, iv: Uint8Array | undefined, encrypt: boolean): Uint8Array => {
    const cipher = mode === 'ecb' ? ecb(key, { disablePadding: true })
      : mode === 'cbc' ? cbc(key, iv!, { disablePadding: true })
        : ctr(key, iv!)
    return encrypt ? cipher.encrypt(data) : cipher.decrypt(data)
  }
  return {
    encrypt: (data, iv) => run(data, iv, true),
    decrypt: (data, iv) => run(data, iv, false),
  }
}

function cpuMilliseconds(): number {
  return performance.now()
}

/** AES, SHA and PBKDF2 in JavaScript as a {@link CryptoProvider}. */
export const jsCrypto: CryptoProvider = {
  name: 'JavaScript crypto (@noble/ciphers, @noble/hashes)',
  hasCipher: (algorithm) => isAes(algorithm),
  hasHash: (hash) => hash in HASHES,
  cipher(algorithm, mode, key) {
    if (!isAes(algorithm)) throw new ImageError('UNSUPPORTED', `cipher ${algorithm} in ${mode} mode is not available in ${this.name}`)
    const keyLength = CIPHER_KEY_LENGTH[algorithm]
    if (mode === 'xts') return xtsFromEcb(aesContext('ecb', key.subarray(0, keyLength)), aesContext('ecb', key.subarray(keyLength)))
    return aesContext(mode, key)
  },
  hash(hash: HashAlgorithm, parts) {
    const h = HASHES[hash].create()
    for (const part of parts) h.update(part)
    return h.digest()
  },
  async pbkdf2(hash, password, salt, iterations, length) {
    return pbkdf2Async(HASHES[hash], password, salt, { c: iterations, dkLen: length })
  },
  async pbkdf2Rate(hash, passwordLength, saltLength, outputLength, windowMs) {
    // qcrypto_pbkdf2_count_iters, timed by the clock (no CPU clock in a browser).
    const password = jsCrypto.randomBytes(passwordLength)
    const salt = jsCrypto.randomBytes(saltLength)
    let iterations = 1 << 10
    for (;;) {
      const start = cpuMilliseconds()
      pbkdf2(HASHES[hash], password, salt, { c: iterations, dkLen: outputLength })
      const elapsed = cpuMilliseconds() - start
      if (elapsed > windowMs) return (iterations * 1000) / elapsed
      if (elapsed <= 0) iterations *= 2
      else if (elapsed < windowMs / 5) iterations *= 10
      else iterations = Math.ceil((iterations * 2 * windowMs) / elapsed)
    }
  },
  randomBytes(length) {
    const out = new Uint8Array(length)
    // getRandomValues fills at most 65536 bytes a call.
    for (let at = 0; at < length; at += 65536) globalThis.crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)))
    return out
  },
}
