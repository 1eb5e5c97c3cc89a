import { test } from 'node:test'
import assert from 'node:assert/strict'
import { afMerge, afSplit, diffuse } from '../../src/crypto/af.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import type { HashAlgorithm } from '../../src/crypto/provider.js'
import { HASH_DIGEST_LENGTH, HASH_ALGORITHMS } from '../../src/crypto/provider.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const hashOf = (h: HashAlgorithm) => (parts: readonly Uint8Array[]) => nodeCrypto.hash(h, parts)
const counting = (length: number, step: number, start: number) => Uint8Array.from({ length }, (_, i) => (i * step + start) & 0xff)

// Goldens computed with Python's hashlib from the cryptsetup/QEMU definition (H1 diffuse).
test('diffuse hashes be32(index) ‖ piece, the last piece truncated', () => {
  const sha256 = Uint8Array.from({ length: 40 }, (_, i) => i)
  diffuse(sha256, hashOf('sha256'), 32)
  assert.equal(hex(sha256), 'bff51a6d513395979e3a870c8483769a5a70002e6e32c146c53e1d2edc4670029168dfa0b824fbae')
  const sha1 = Uint8Array.from({ length: 40 }, (_, i) => i)
  diffuse(sha1, hashOf('sha1'), 20)
  assert.equal(hex(sha1), '84e066de1e0d3544386085dd64a6451af137c6f0763ce0597e836252b480a8de10feea6c299aadfc')
})

test('afSplit matches the reference with fixed random stripes, and afMerge undoes it', () => {
  const key = counting(16, 13, 5)
  const random = counting(32, 7, 1)
  const split = afSplit(key, 3, hashOf('sha256'), 32, (n) => random.subarray(0, n))
  assert.equal(hex(split), '01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da3171ad869d2329b04c8fa2c346599468')
  assert.deepEqual(afMerge(split, 16, 3, hashOf('sha256'), 32), key)
})

test('split and merge round-trip for every hash and key length, 4000 stripes', () => {
  for (const hash of HASH_ALGORITHMS) {
    for (const keyLength of [24, 64]) {
      const key = nodeCrypto.randomBytes(keyLength)
      const split = afSplit(key, 4000, hashOf(hash), HASH_DIGEST_LENGTH[hash], (n) => nodeCrypto.randomBytes(n))
      assert.equal(split.length, keyLength * 4000)
      assert.deepEqual(afMerge(split, keyLength, 4000, hashOf(hash), HASH_DIGEST_LENGTH[hash]), key, `${hash} ${keyLength}`)
    }
  }
})

test('a changed stripe gives another key (anti-forensic property)', () => {
  const key = nodeCrypto.randomBytes(32)
  const split = afSplit(key, 100, hashOf('sha256'), 32, (n) => nodeCrypto.randomBytes(n))
  split[5 * 32] = split[5 * 32]! ^ 1
  assert.notDeepEqual(afMerge(split, 32, 100, hashOf('sha256'), 32), key)
})
