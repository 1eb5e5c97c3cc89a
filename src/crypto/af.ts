// LUKS anti-forensic splitter (crypto/afsplit.c, cryptsetup's AF_split/AF_merge): a key becomes
// `stripes` blocks, all but the last random, folded together with the H1 diffuse function, so
// that wiping any part of the key material destroys the key.
import { ImageError } from '../errors.js'

/** Hashes the concatenation of its parts (the volume's hash algorithm). */
export type HashFunction = (parts: readonly Uint8Array[]) => Uint8Array

/**
 * The diffuse function: the block is cut into digest-sized pieces and each piece replaced by
 * hash(be32(index) ‖ piece), the last piece truncated to its length (qcrypto_afsplit_hash).
 */
export function diffuse(block: Uint8Array, hash: HashFunction, digestLength: number): void {
  const counter = new Uint8Array(4)
  const view = new DataView(counter.buffer)
  for (let i = 0, at = 0; at < block.length; i++, at += digestLength) {
    const length = Math.min(digestLength, block.length - at)
    view.setUint32(0, i)
    const digest = hash([counter, block.subarray(at, at + length)])
    if (digest.length !== digestLength) throw new ImageError('INVALID_ARGUMENT', `hash gave ${digest.length} bytes, ${digestLength} expected`)
    block.set(digest.subarray(0, length), at)
  }
}

function xor(a: Uint8Array, b: Uint8Array, out: Uint8Array): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! ^ b[i]!
}

/**
 * Splits `key` into `stripes` × key-length bytes of key material (qcrypto_afsplit_encode).
 * `random` supplies the random stripes.
 */
export function afSplit(key: Uint8Array, stripes: number, hash: HashFunction, digestLength: number, random: (length: number) => Uint8Array): Uint8Array {
  const blockLength = key.length
  const out = new Uint8Array(blockLength * stripes)
  out.set(random(blockLength * (stripes - 1)), 0) // every stripe but the last is random
  const block = new Uint8Array(blockLength)
  for (let i = 0; i < stripes - 1; i++) {
    const stripe = out.subarray(i * blockLength, (i + 1) * blockLength)
    xor(stripe, block, block)
    diffuse(block, hash, digestLength)
  }
  xor(key, block, out.subarray((stripes - 1) * blockLength))
  return out
}

/** Recovers a key of `keyLength` bytes from its split `material` (qcrypto_afsplit_decode). */
export function afMerge(material: Uint8Array, keyLength: number, stripes: number, hash: HashFunction, digestLength: number): Uint8Array {
  if (material.length < keyLength * stripes) throw new ImageError('INVALID_ARGUMENT', `key material of ${material.length} bytes is shorter than ${stripes} stripes of ${keyLength}`)
  const block = new Uint8Array(keyLength)
  for (let i = 0; i < stripes - 1; i++) {
    xor(material.subarray(i * keyLength, (i + 1) * keyLength), block, block)
    diffuse(block, hash, digestLength)
  }
  const key = new Uint8Array(keyLength)
  xor(material.subarray((stripes - 1) * keyLength, stripes * keyLength), block, key)
  return key
}
