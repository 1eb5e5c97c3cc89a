// XTS mode (IEEE 1619) over a 16-byte block cipher in ECB mode, for hosts whose library lacks XTS
// for a key size (OpenSSL has aes-128-xts and aes-256-xts, not aes-192-xts). QEMU builds XTS
// the same way on top of its ECB ciphers (crypto/xts.c). Whole blocks only: sectors never need
// ciphertext stealing.
import { ImageError } from '../errors.js'
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

/** Whether this host stores numbers little-endian (the word-wise tweak arithmetic assumes it). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/**
 * XTS over many sectors at once: the first tweak of every sector in one ECB call over all the
 * IVs, the tweaks of the blocks by doubling in 32-bit words, then one ECB call over all the data.
 * Per-sector cipher contexts (one OpenSSL context per 512 bytes) cost more than the cipher itself;
 * this does the same arithmetic as {@link xtsFromEcb} in three passes. `ivs` holds a 16-byte IV
 * per sector; `data` is whole sectors of `sectorSize` (a multiple of 16) bytes. Undefined on a
 * big-endian host (callers then go sector by sector).
 */
export function xtsSectors(dataCipher: CipherContext, tweakCipher: CipherContext, data: Uint8Array, ivs: Uint8Array, sectorSize: number, encrypt: boolean): Uint8Array | undefined {
  if (!LITTLE_ENDIAN || sectorSize % BLOCK !== 0 || data.length % sectorSize !== 0 || ivs.length !== (data.length / sectorSize) * BLOCK) return undefined
  const first = tweakCipher.encrypt(ivs, undefined)
  const mask = new Uint32Array(data.length / 4)
  const firstWords = new Uint32Array(first.buffer, first.byteOffset, first.length / 4)
  const wordsPerSector = sectorSize / 4
  for (let s = 0, at = 0; at < mask.length; s++, at += wordsPerSector) {
    let w0 = firstWords[s * 4]!
    let w1 = firstWords[s * 4 + 1]!
    let w2 = firstWords[s * 4 + 2]!
    let w3 = firstWords[s * 4 + 3]!
    for (let b = at; b < at + wordsPerSector; b += 4) {
      mask[b] = w0
      mask[b + 1] = w1
      mask[b + 2] = w2
      mask[b + 3] = w3
      // T·α in GF(2^128), little-endian: shift the 128 bits left by one, fold the carry with 0x87.
      const carry = w3 >>> 31
      w3 = ((w3 << 1) | (w2 >>> 31)) >>> 0
      w2 = ((w2 << 1) | (w1 >>> 31)) >>> 0
      w1 = ((w1 << 1) | (w0 >>> 31)) >>> 0
      w0 = ((w0 << 1) ^ (carry * 0x87)) >>> 0
    }
  }
  const buffer = new Uint8Array(data.length)
  const words = new Uint32Array(buffer.buffer)
  if (data.byteOffset % 4 === 0) {
    const input = new Uint32Array(data.buffer, data.byteOffset, data.length / 4)
    for (let i = 0; i < words.length; i++) words[i] = input[i]! ^ mask[i]!
  } else {
    buffer.set(data)
    for (let i = 0; i < words.length; i++) words[i] = words[i]! ^ mask[i]!
  }
  const out = encrypt ? dataCipher.encrypt(buffer, undefined) : dataCipher.decrypt(buffer, undefined)
  if (out.byteOffset % 4 !== 0) {
    const copy = new Uint8Array(out)
    return xorWords(copy, mask)
  }
  return xorWords(out, mask)
}

function xorWords(bytes: Uint8Array, mask: Uint32Array): Uint8Array {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
  for (let i = 0; i < words.length; i++) words[i] = words[i]! ^ mask[i]!
  return bytes
}
