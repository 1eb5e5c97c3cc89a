import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createCipheriv, createHash } from 'node:crypto'
import { createSectorCipher, essivCipher, masterKeyLength } from '../../src/crypto/sector-cipher.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import { CIPHER_MODES, IVGEN_ALGORITHMS, type CipherAlgorithm } from '../../src/crypto/provider.js'
import { isImageError } from '../../src/errors.js'

const key32 = Uint8Array.from({ length: 32 }, (_, i) => i * 3 + 1)
const data = Uint8Array.from({ length: 1536 }, (_, i) => (i * 31 + 7) & 0xff)

/** One sector the plain node:crypto way. */
function direct(name: string, key: Uint8Array, iv: Uint8Array | null, sector: Uint8Array): Uint8Array {
  const c = createCipheriv(name, key, iv)
  c.setAutoPadding(false)
  return new Uint8Array(Buffer.concat([c.update(sector), c.final()]))
}

function le64(n: number): Uint8Array {
  const iv = new Uint8Array(16)
  const view = new DataView(iv.buffer)
  view.setUint32(0, n % 2 ** 32, true)
  view.setUint32(4, Math.floor(n / 2 ** 32), true)
  return iv
}

test('plain64 and plain IVs are the little-endian sector number (plain keeps 32 bits)', async () => {
  const first = 2 ** 32 + 3
  for (const ivgenAlg of ['plain64', 'plain'] as const) {
    const cipher = createSectorCipher(nodeCrypto, { cipherAlg: 'aes-256', cipherMode: 'cbc', ivgenAlg, ivgenHashAlg: undefined }, key32)
    const out = await cipher.encrypt(data, first)
    for (let s = 0; s < 3; s++) {
      const sector = ivgenAlg === 'plain' ? (first + s) % 2 ** 32 : first + s
      assert.deepEqual(out.subarray(s * 512, (s + 1) * 512), direct('aes-256-cbc', key32, le64(sector), data.subarray(s * 512, (s + 1) * 512)), `${ivgenAlg} sector ${s}`)
    }
    assert.deepEqual(await cipher.decrypt(out, first), data)
  }
})

test('essiv encrypts the sector number with the hash of the key (cut to the ESSIV cipher)', async () => {
  const key16 = key32.subarray(0, 16)
  const cipher = createSectorCipher(nodeCrypto, { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'essiv', ivgenHashAlg: 'sha256' }, key16)
  const out = await cipher.encrypt(data, 77)
  const salt = createHash('sha256').update(key16).digest() // 32 bytes: ESSIV runs aes-256
  for (let s = 0; s < 3; s++) {
    const iv = direct('aes-256-ecb', salt, null, le64(77 + s))
    assert.deepEqual(out.subarray(s * 512, (s + 1) * 512), direct('aes-128-cbc', key16, iv, data.subarray(s * 512, (s + 1) * 512)))
  }
})

test('the ESSIV cipher follows the digest length, as qcrypto_block_luks_essiv_cipher', () => {
  assert.equal(essivCipher('aes-256', 'sha256'), 'aes-256')
  assert.equal(essivCipher('aes-128', 'sha256'), 'aes-256')
  assert.equal(essivCipher('aes-256', 'md5'), 'aes-128')
  assert.equal(essivCipher('twofish-128', 'sha256'), 'twofish-256')
  assert.throws(() => essivCipher('aes-128', 'sha1'), /No AES cipher with key size 20 available/)
  assert.throws(() => essivCipher('serpent-128', 'sha512'), /No Serpent cipher with key size 64 available/)
  assert.throws(() => essivCipher('cast5-128', 'sha256'), /Cipher cast5-128 not supported with essiv/)
})

test('XTS built on ECB (for aes-192) equals OpenSSL XTS where OpenSSL has it', async () => {
  const { xtsFromEcb } = await import('../../src/crypto/xts.js')
  for (const alg of ['aes-128', 'aes-256'] as const) {
    const key = nodeCrypto.randomBytes(masterKeyLength(alg, 'xts'))
    const half = key.length / 2
    const built = xtsFromEcb(nodeCrypto.cipher(alg, 'ecb', key.subarray(0, half)), nodeCrypto.cipher(alg, 'ecb', key.subarray(half)))
    const native = nodeCrypto.cipher(alg, 'xts', key)
    const tweak = le64(123456789)
    assert.deepEqual(built.encrypt(data, tweak), native.encrypt(data, tweak), alg)
    assert.deepEqual(built.decrypt(native.encrypt(data, tweak), tweak), data)
  }
  assert.ok(nodeCrypto.hasCipher('aes-192', 'xts'))
})

test('every AES size, mode and IV generator round-trips, a short last sector included', async () => {
  const material = data.subarray(0, 1024 + 256) // LUKS key material of aes-192 ends mid-sector
  for (const cipherAlg of ['aes-128', 'aes-192', 'aes-256'] as CipherAlgorithm[]) {
    for (const cipherMode of CIPHER_MODES) {
      for (const ivgenAlg of IVGEN_ALGORITHMS) {
        const key = nodeCrypto.randomBytes(masterKeyLength(cipherAlg, cipherMode))
        const cipher = createSectorCipher(nodeCrypto, { cipherAlg, cipherMode, ivgenAlg, ivgenHashAlg: 'sha256' }, key)
        const out = await cipher.encrypt(material, 9)
        assert.notDeepEqual(out, material)
        assert.deepEqual(await cipher.decrypt(out, 9), material, `${cipherAlg}-${cipherMode}-${ivgenAlg}`)
        // Sectors are independent: decrypting the second sector alone gives it back.
        if (cipherMode !== 'ecb') assert.deepEqual(await cipher.decrypt(out.subarray(512, 1024), 10), material.subarray(512, 1024))
      }
    }
  }
})

test('ciphers Node lacks are refused with UNSUPPORTED, naming what is available', () => {
  for (const alg of ['serpent-256', 'twofish-128'] as const) {
    assert.equal(nodeCrypto.hasCipher(alg, 'xts'), false)
    assert.throws(() => createSectorCipher(nodeCrypto, { cipherAlg: alg, cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, new Uint8Array(64)),
      (e) => isImageError(e, 'UNSUPPORTED') && e.message.includes(`cipher ${alg} in xts mode is not available`) && e.message.includes('aes-256'))
  }
  assert.throws(() => createSectorCipher(nodeCrypto, { cipherAlg: 'aes-256', cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, new Uint8Array(32)),
    (e) => isImageError(e, 'BAD_KEY') && /needs a 64-byte key, got 32/.test(e.message))
})

test('bulk XTS over many sectors equals OpenSSL XTS sector by sector, also at unaligned offsets', async () => {
  const { xtsSectors } = await import('../../src/crypto/xts.js')
  for (const alg of ['aes-128', 'aes-256'] as const) {
    const key = nodeCrypto.randomBytes(masterKeyLength(alg, 'xts'))
    const half = key.length / 2
    const native = nodeCrypto.cipher(alg, 'xts', key)
    const sectors = 9
    const plain = nodeCrypto.randomBytes(sectors * 512 + 1).subarray(1) // byteOffset 1: not word aligned
    const ivs = new Uint8Array(sectors * 16)
    for (let s = 0; s < sectors; s++) ivs.set(le64(2 ** 40 + s * 977), s * 16)
    const expected = new Uint8Array(plain.length)
    for (let s = 0; s < sectors; s++) expected.set(native.encrypt(plain.subarray(s * 512, (s + 1) * 512), ivs.subarray(s * 16, s * 16 + 16)), s * 512)
    const dataEcb = nodeCrypto.cipher(alg, 'ecb', key.subarray(0, half))
    const tweakEcb = nodeCrypto.cipher(alg, 'ecb', key.subarray(half))
    const got = xtsSectors(dataEcb, tweakEcb, plain, ivs, 512, true)
    assert.deepEqual(got, expected, alg)
    assert.deepEqual(xtsSectors(dataEcb, tweakEcb, expected, ivs, 512, false), plain, `${alg} decrypt`)
    // The sector cipher takes the bulk path: the same bytes as OpenSSL sector by sector.
    const cipher = createSectorCipher(nodeCrypto, { cipherAlg: alg, cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, key)
    const viaCipher = await cipher.encrypt(plain, 5)
    for (let s = 0; s < sectors; s++) assert.deepEqual(viaCipher.subarray(s * 512, (s + 1) * 512), native.encrypt(plain.subarray(s * 512, (s + 1) * 512), le64(5 + s)))
  }
})
