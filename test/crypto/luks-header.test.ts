import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  LUKS_KEY_SLOT_DISABLED, LUKS_KEY_SLOT_ENABLED, LUKS_MAGIC, decodeLuksHeader, encodeLuksHeader, keySlotSectors,
  luksCipherStrings, parseLuksCipher, validateLuksHeader, type LuksHeader,
} from '../../src/crypto/luks-header.js'
import { isImageError } from '../../src/errors.js'

function header(overrides: Partial<LuksHeader> = {}): LuksHeader {
  return {
    magic: LUKS_MAGIC.slice(), version: 1, cipherName: 'aes', cipherMode: 'xts-plain64', hashSpec: 'sha256',
    payloadOffsetSector: 4040, masterKeyLength: 64,
    masterKeyDigest: Uint8Array.from({ length: 20 }, (_, i) => i + 1), masterKeySalt: Uint8Array.from({ length: 32 }, (_, i) => 255 - i),
    masterKeyIterations: 9157, uuid: '9171cf1a-c2d1-4786-994a-c00001703f7a',
    keySlots: Array.from({ length: 8 }, (_, i) => ({
      active: i === 0 ? LUKS_KEY_SLOT_ENABLED : LUKS_KEY_SLOT_DISABLED, iterations: i === 0 ? 36328 : 0,
      salt: new Uint8Array(32).fill(i === 0 ? 0x42 : 0), keyOffsetSector: 8 + i * 504, stripes: 4000,
    })),
    unterminated: [],
    ...overrides,
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

test('header encodes at the offsets of the LUKS1 spec and decodes back', () => {
  const h = header()
  const bytes = encodeLuksHeader(h)
  assert.equal(bytes.length, 592)
  assert.equal(hex(bytes.subarray(0, 8)), '4c554b53babe0001')
  assert.equal(Buffer.from(bytes.subarray(8, 11)).toString(), 'aes')
  assert.equal(Buffer.from(bytes.subarray(40, 51)).toString(), 'xts-plain64')
  assert.equal(Buffer.from(bytes.subarray(72, 78)).toString(), 'sha256')
  assert.equal(hex(bytes.subarray(104, 112)), '00000fc800000040') // payload 4040 sectors, key 64 bytes
  assert.equal(hex(bytes.subarray(164, 168)), '000023c5') // master key iterations 9157
  assert.equal(hex(bytes.subarray(208, 216)), '00ac71f300008de8') // slot 0: enabled, 36328 iterations
  assert.equal(hex(bytes.subarray(248, 256)), '0000000800000fa0') // slot 0: sector 8, 4000 stripes
  assert.equal(hex(bytes.subarray(256, 260)), '0000dead')
  assert.deepEqual(decodeLuksHeader(bytes), h)
})

test('validation refuses what QEMU refuses, with BAD_KEY', () => {
  const cases: [Partial<LuksHeader> | ((h: LuksHeader) => void), RegExp][] = [
    [{ magic: new Uint8Array(6) }, /Volume is not in LUKS format/],
    [{ version: 2 }, /LUKS version 2 is not supported/],
    [{ unterminated: ['cipherName'] }, /cipher name is not NUL terminated/],
    [(h) => { h.keySlots[3]!.stripes = 3999 }, /Keyslot 3 is corrupted \(stripes 3999 != 4000\)/],
    [(h) => { h.keySlots[2]!.active = 7 }, /Keyslot 2 state \(active\/disable\) is corrupted/],
    [(h) => { h.keySlots[0]!.keyOffsetSector = 4 }, /Keyslot 0 is overlapping with the LUKS header/],
    [{ payloadOffsetSector: 4000 }, /Keyslot 7 is overlapping with the encrypted payload/],
    [(h) => { h.keySlots[1]!.keyOffsetSector = 100 }, /Keyslots 0 and 1 are overlapping in the header/],
    [(h) => { h.keySlots[0]!.iterations = 0 }, /Keyslot 0 iteration count is zero/],
  ]
  for (const [change, message] of cases) {
    const h = header(typeof change === 'function' ? {} : change)
    if (typeof change === 'function') change(h)
    assert.throws(() => validateLuksHeader(h), (e) => isImageError(e, 'BAD_KEY') && message.test(e.message), String(message))
  }
  validateLuksHeader(header())
})

test('an unterminated text field is noticed on decode', () => {
  const bytes = encodeLuksHeader(header())
  bytes.fill(0x41, 72, 104)
  assert.deepEqual(decodeLuksHeader(bytes).unterminated, ['hashSpec'])
})

test('cipher strings parse as QEMU parses them', () => {
  const parse = (cipherName: string, cipherMode: string, masterKeyLength: number, hashSpec = 'sha256') =>
    parseLuksCipher(header({ cipherName, cipherMode, masterKeyLength, hashSpec }))
  assert.deepEqual(parse('aes', 'xts-plain64', 64), { cipherAlg: 'aes-256', cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined, hashAlg: 'sha256' })
  assert.deepEqual(parse('aes', 'xts-plain64', 48), { cipherAlg: 'aes-192', cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined, hashAlg: 'sha256' })
  assert.deepEqual(parse('aes', 'cbc-essiv:sha256', 16, 'sha1'), { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'essiv', ivgenHashAlg: 'sha256', hashAlg: 'sha1' })
  // dm-crypt compatibility: a hash after plain is accepted and ignored.
  assert.deepEqual(parse('serpent', 'ecb-plain:sha1', 32, 'ripemd160'), { cipherAlg: 'serpent-256', cipherMode: 'ecb', ivgenAlg: 'plain', ivgenHashAlg: undefined, hashAlg: 'ripemd160' })
  const bad: [string, string, number, string, RegExp][] = [
    ['aes', 'xts', 64, 'sha256', /Unexpected cipher mode string format xts/],
    ['aes', 'gcm-plain64', 32, 'sha256', /Cipher mode 'gcm' is not supported/],
    ['aes', 'cbc-plain64', 20, 'sha256', /Algorithm 'aes' with key size 20 unsupported/],
    ['des', 'cbc-plain64', 8, 'sha256', /Algorithm 'des' with key size 8 unsupported/],
    ['aes', 'cbc-plain64', 32, 'whirlpool', /Algorithm 'whirlpool' not supported/],
    ['aes', 'cbc-essiv', 32, 'sha256', /Missing IV generator hash specification/],
    ['aes', 'cbc-essiv:sha1', 32, 'sha256', /No AES cipher with key size 20 available/],
    ['aes', 'cbc-lmk', 32, 'sha256', /IV generator 'lmk' is not supported/],
  ]
  for (const [name, mode, length, hash, message] of bad) {
    assert.throws(() => parse(name, mode, length, hash), (e) => isImageError(e, 'BAD_KEY') && message.test(e.message), `${name} ${mode}`)
  }
})

test('cipher strings are written as QEMU writes them', () => {
  assert.deepEqual(luksCipherStrings({ cipherAlg: 'aes-256', cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined, hashAlg: 'sha256' }), { cipherName: 'aes', cipherMode: 'xts-plain64' })
  assert.deepEqual(luksCipherStrings({ cipherAlg: 'twofish-128', cipherMode: 'cbc', ivgenAlg: 'essiv', ivgenHashAlg: 'md5', hashAlg: 'sha1' }), { cipherName: 'twofish', cipherMode: 'cbc-essiv:md5' })
})

test('key slot areas follow cryptsetup: sectors rounded up to 8', () => {
  assert.equal(keySlotSectors(64), 504)
  assert.equal(keySlotSectors(48), 376)
  assert.equal(keySlotSectors(32), 256)
  assert.equal(keySlotSectors(24), 192)
  assert.equal(keySlotSectors(16), 128)
})
