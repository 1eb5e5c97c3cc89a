// XTS mode (IEEE 1619) over a 16-byte block cipher in ECB mode, for hosts whose library lacks XTS
// for a key size (OpenSSL has aes-128-xts and aes-256-xts, not aes-192-xts). QEMU builds XTS
// the same way on top of its ECB ciphers (crypto/xts.c). Whole blocks only: sectors never need
// ciphertext stealing.
import { ImageError } from '../../errors.js'
import type { CipherContext } from './provider.js'

const BLOCK = 16

/** The tweak of every block: T0 = E_k2(iv), then T(j+1) = T(j)·α in GF(2^128) (little-endian). */
function tweaks(tweakCipher: CipherContext, iv: Uint8Array, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * BLOCK)
  out.set(tweakCipher.encrypt(iv, undefined).subarray(0, BLOCK), 0)
  for (let j = 1; j < blocks; j++) {
    const prev = (j - 1) * BLOCK
    const at = j * BLOCK
    let carry = 0
    for (let b = 0; b < BLOCK; b++) {
      const value = out[prev + b]!
      out[at + b] = ((value << 1) | carry) & 0xff
      carry = value >>> 7
    }
    if (carry) out[at] = out[at]! ^ 0x87
  }
  return out
}

function xorInto(target: Uint8Array, mask: Uint8Array): void {
  for (let i = 0; i < target.length; i++) target[i] = target[i]! ^ mask[i]!
}

/** XTS with `dataCipher` (key 1) and `tweakCipher` (key 2), both ECB contexts. */
export function xtsFromEcb(dataCipher: CipherContext, tweakCipher: CipherContext): CipherContext {
  const run = (data: Uint8Array, iv: Uint8Array | undefined, encrypt: boolean): Uint8Array => {
    if (iv === undefined || iv.length !== BLOCK) throw new ImageError('INVALID_ARGUMENT', 'XTS needs a 16-byte tweak')
    if (data.length % BLOCK !== 0 || data.length === 0) throw new ImageError('INVALID_ARGUMENT', `XTS data of ${data.length} bytes is not a whole number of blocks`)
    const mask = tweaks(tweakCipher, iv, data.length / BLOCK)
    const buffer = new Uint8Array(data) // a copy (Buffer.slice would share)
    xorInto(buffer, mask)
    const out = encrypt ? dataCipher.encrypt(buffer, undefined) : dataCipher.decrypt(buffer, undefined)
    xorInto(out, mask)
    return out
  }
  return {
    encrypt: (data, iv) => run(data, iv, true),
    decrypt: (data, iv) => run(data, iv, false),
  }
}
