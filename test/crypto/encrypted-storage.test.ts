import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encryptedStorage } from '../../src/crypto/encrypted-storage.js'
import { createSectorCipher } from '../../src/crypto/sector-cipher.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCrypto } from '../../src/node/crypto.js'

test('writes land encrypted at their host sectors; unaligned writes keep their neighbours', async () => {
  const inner = new MemoryStorage(new Uint8Array(8192))
  const cipher = createSectorCipher(nodeCrypto, { cipherAlg: 'aes-256', cipherMode: 'xts', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, nodeCrypto.randomBytes(64))
  const view = encryptedStorage(inner, cipher)
  const model = new Uint8Array(8192)
  await view.write(0, model) // start from encrypted zeros
  let seed = 1
  for (let i = 0; i < 40; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    const offset = seed % 8000
    const length = 1 + (seed >> 8) % Math.min(1500, 8192 - offset)
    const piece = new Uint8Array(length).fill(i + 1)
    await view.write(offset, piece)
    model.set(piece, offset)
  }
  assert.deepEqual(await view.read(0, 8192), model)
  assert.deepEqual(await view.read(1000, 3000), model.subarray(1000, 4000))
  // The file holds ciphertext: each sector decrypts with its own number.
  const raw = await inner.read(1024, 512)
  assert.notDeepEqual(raw, model.subarray(1024, 1536))
  assert.deepEqual(await cipher.decrypt(raw, 2), model.subarray(1024, 1536))
})

test('concurrent unaligned writes to one sector all land (read-modify-write is serialized)', async () => {
  const inner = new MemoryStorage(new Uint8Array(1024))
  const cipher = createSectorCipher(nodeCrypto, { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, nodeCrypto.randomBytes(16))
  const view = encryptedStorage(inner, cipher)
  await view.write(0, new Uint8Array(1024))
  await Promise.all(Array.from({ length: 64 }, (_, i) => view.write(i * 8, new Uint8Array(8).fill(i + 1))))
  const expected = new Uint8Array(1024)
  for (let i = 0; i < 64; i++) expected.fill(i + 1, i * 8, i * 8 + 8)
  assert.deepEqual(await view.read(0, 1024), expected)
})
