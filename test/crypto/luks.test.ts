import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatLuks, luksInfo, luksPayloadLength, resolveLuksOptions, unlockLuks, type AreaReader } from '../../src/crypto/luks.js'
import { decodeLuksHeader, parseLuksCipher, validateLuksHeader } from '../../src/crypto/luks-header.js'
import { afSplit } from '../../src/crypto/af.js'
import { createSectorCipher } from '../../src/crypto/sector-cipher.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import { isImageError } from '../../src/errors.js'

const secret = new TextEncoder().encode('correct horse')
const reader = (area: Uint8Array): AreaReader => async (offset, length) => area.slice(offset, offset + length)

test('a formatted volume decodes, validates and unlocks with its passphrase only', async () => {
  const { volume, area, masterKey } = await formatLuks(nodeCrypto, { iterTime: 0 }, secret)
  assert.equal(area.length, 4040 * 512) // QEMU: aes-256-xts header area is 2,068,480 bytes
  const header = decodeLuksHeader(area)
  validateLuksHeader(header)
  assert.deepEqual(header, volume.header)
  assert.deepEqual(parseLuksCipher(header), { cipherAlg: 'aes-256', cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined, hashAlg: 'sha256' })
  assert.equal(header.masterKeyIterations, 1000) // iter-time 0: QEMU's minimum
  assert.equal(header.keySlots[0]!.iterations, 1000)
  assert.match(header.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.deepEqual(await unlockLuks(nodeCrypto, volume, reader(area), secret), masterKey)
  await assert.rejects(unlockLuks(nodeCrypto, volume, reader(area), new TextEncoder().encode('wrong')),
    (e) => isImageError(e, 'BAD_KEY') && e.message === 'Invalid password, cannot unlock any keyslot')
  // Damaged key material cannot be unlocked either.
  const damaged = area.slice()
  damaged[4096 + 1000] = damaged[4096 + 1000]! ^ 0xff
  await assert.rejects(unlockLuks(nodeCrypto, volume, reader(damaged), secret), (e) => isImageError(e, 'BAD_KEY'))
})

test('options other than the defaults shape the header as QEMU does', async () => {
  const { volume, area, masterKey } = await formatLuks(nodeCrypto, { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'essiv', hashAlg: 'sha1', iterTime: 0 }, secret)
  const h = volume.header
  assert.equal(h.cipherName, 'aes')
  assert.equal(h.cipherMode, 'cbc-essiv:sha256')
  assert.equal(h.hashSpec, 'sha1')
  assert.equal(h.masterKeyLength, 16)
  assert.equal(h.payloadOffsetSector, 8 + 8 * 128)
  assert.deepEqual(h.keySlots.map((s) => s.keyOffsetSector), [8, 136, 264, 392, 520, 648, 776, 904])
  assert.deepEqual(await unlockLuks(nodeCrypto, volume, reader(area), secret), masterKey)
  const info = luksInfo(volume)
  assert.equal(info.ivgenHashAlg, 'sha256')
  assert.equal(info.payloadOffset, h.payloadOffsetSector * 512)
  assert.deepEqual(info.slots[0], { active: true, iters: 1000, stripes: 4000, keyOffset: 4096 })
  assert.deepEqual(info.slots[1], { active: false, iters: undefined, stripes: undefined, keyOffset: 136 * 512 })
})

test('key material ending mid-sector (aes-192 cbc, as cryptsetup pads it) unlocks, though qimg does not create it', async () => {
  assert.throws(() => resolveLuksOptions({ cipherAlg: 'aes-192', cipherMode: 'cbc' }), (e) => isImageError(e, 'UNSUPPORTED') && /96000 bytes.*qemu-img 7\.2 cannot create or open/.test(e.message))
  // Build the volume by hand: slot 0 holds 96000 bytes, cryptsetup encrypts 188 sectors (zero padded).
  const template = await formatLuks(nodeCrypto, { cipherAlg: 'aes-128', cipherMode: 'cbc', iterTime: 0 }, secret)
  const spec = { cipherAlg: 'aes-192', cipherMode: 'cbc', ivgenAlg: 'plain64', ivgenHashAlg: undefined, hashAlg: 'sha256' } as const
  const masterKey = nodeCrypto.randomBytes(24)
  const header = { ...template.volume.header, masterKeyLength: 24, masterKeyIterations: 1000 }
  header.masterKeyDigest = await nodeCrypto.pbkdf2('sha256', masterKey, header.masterKeySalt, 1000, 20)
  const slot = { ...header.keySlots[0]!, iterations: 1000 }
  header.keySlots = [slot, ...header.keySlots.slice(1)]
  const slotKey = await nodeCrypto.pbkdf2('sha256', secret, slot.salt, 1000, 24)
  const padded = new Uint8Array(188 * 512)
  padded.set(afSplit(masterKey, 4000, (p) => nodeCrypto.hash('sha256', p), 32, (n) => nodeCrypto.randomBytes(n)))
  const material = await createSectorCipher(nodeCrypto, spec, slotKey).encrypt(padded, 0)
  const area = new Uint8Array(slot.keyOffsetSector * 512 + material.length)
  area.set(material, slot.keyOffsetSector * 512)
  assert.deepEqual(await unlockLuks(nodeCrypto, { header, spec }, reader(area), secret), masterKey)
})

test('PBKDF2 iterations scale with iter-time (master key digest gets an eighth)', async () => {
  const { volume } = await formatLuks(nodeCrypto, { iterTime: 100, hashAlg: 'sha1' }, secret)
  const slot = volume.header.keySlots[0]!.iterations
  const master = volume.header.masterKeyIterations
  assert.ok(slot > 1000, `slot iterations ${slot}`)
  // Both come from separate benchmarks; allow for noise around the factor 8.
  assert.ok(master < slot, `master ${master} < slot ${slot}`)
})

test('invalid combinations are refused before anything is written', () => {
  assert.throws(() => resolveLuksOptions({ ivgenAlg: 'essiv', ivgenHashAlg: 'sha1' }), /No AES cipher with key size 20 available/)
  assert.throws(() => resolveLuksOptions({ cipherAlg: 'cast5-128' }), /Unsupported cipher mode xts/)
  assert.throws(() => resolveLuksOptions({ cipherAlg: 'serpent-256' }, nodeCrypto), (e) => isImageError(e, 'UNSUPPORTED'))
  assert.throws(() => resolveLuksOptions({ iterTime: -1 }), /iter-time/)
})

test('the header area length is what qemu-img measure adds (before rounding to clusters)', () => {
  assert.equal(luksPayloadLength({}), 2068480)
  assert.equal(luksPayloadLength({ cipherAlg: 'aes-128', cipherMode: 'cbc' }), (8 + 8 * 128) * 512)
})
