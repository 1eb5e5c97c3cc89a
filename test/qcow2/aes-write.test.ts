// Writing legacy AES (crypt_method 1) qcow2 images in memory: AES-128-CBC with plain64 IVs of
// the GUEST sector (crypt_physical_offset false), unlike LUKS which numbers host sectors.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createCipheriv } from 'node:crypto'
import { openChain } from '../../src/format/chain.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import { checkQcow2 } from '../../src/qcow2/check.js'
import { writeSkeleton } from '../../src/qcow2/create.js'
import { setUpAesEncryption } from '../../src/qcow2/crypto/setup.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import * as spec from '../../src/qcow2/spec.js'
import { memoryHost } from '../helpers/memory-host.js'
import { prng } from '../helpers/prng.js'

const K = 64 * 1024
const SIZE = 4 * 1024 * 1024
const SECRET = new TextEncoder().encode('123456')

/** A new AES image as node/create.ts makes one: skeleton, L1 grown, size set, then crypt_method 1. */
async function aesImage(options: { extendedL2?: boolean } = {}): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), 'aes.qcow2')
  await writeSkeleton(storage, { size: SIZE, encrypt: { format: 'aes' }, extendedL2: options.extendedL2 })
  const img = await Qcow2Image.open(storage, { writable: true })
  await img.writer.growL1(1)
  await img.setVirtualSize(SIZE)
  await setUpAesEncryption(img)
  await img.close()
  return storage
}

function open(storage: MemoryStorage, writable = false): Promise<BlockDevice> {
  return openChain(storage, { format: 'qcow2', host: memoryHost({}), writable, crypto: nodeCrypto, secret: async () => SECRET })
}

/** QEMU's qcow AES: the secret zero-padded to 16 bytes, AES-128-CBC, IV = plain64(sector). */
function qemuAes(plain: Uint8Array, sector: number): Uint8Array {
  const key = Buffer.alloc(16)
  key.set(SECRET)
  const out = new Uint8Array(plain.length)
  for (let at = 0; at < plain.length; at += 512) {
    const iv = Buffer.alloc(16)
    iv.writeBigUInt64LE(BigInt(sector + at / 512))
    const cipher = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false)
    out.set(Buffer.concat([cipher.update(plain.subarray(at, at + 512)), cipher.final()]), at)
  }
  return out
}

/** Host offset of guest `offset` in the first L2 table (a normal cluster, 64 KiB, plain L2), from the raw bytes. */
async function hostOf(storage: MemoryStorage, offset: number): Promise<number> {
  const u64 = async (at: number) => Number(new DataView((await storage.read(at, 8)).buffer).getBigUint64(0) & 0x00ff_ffff_ffff_fe00n)
  const l2 = await u64(await u64(40))
  const host = await u64(l2 + (offset / K) * 8)
  assert.ok(host > 0, `guest ${offset} is allocated`)
  return host
}

test('crypt_method 1 and no crypto header extension', async () => {
  const storage = await aesImage()
  const img = await Qcow2Image.open(storage, { metadataOnly: true })
  assert.equal(img.layout.header.cryptMethod, spec.CRYPT_AES)
  assert.equal(img.layout.header.cryptoHeader, undefined)
  assert.equal(img.encrypted, true)
  await img.close()
})

for (const extendedL2 of [false, true]) {
  test(`unaligned writes read back (${extendedL2 ? 'extended L2' : 'plain L2'}), check clean`, async () => {
    const storage = await aesImage({ extendedL2 })
    const model = new Uint8Array(SIZE)
    const random = prng(7)
    const device = await open(storage, true)
    for (let i = 0; i < 60; i++) {
      const offset = Math.floor(random() * (SIZE - 1))
      const length = 1 + Math.floor(random() * Math.min(3 * K, SIZE - offset - 1))
      const piece = new Uint8Array(length).fill(i + 1)
      await device.write(offset, piece)
      model.set(piece, offset)
    }
    await device.writeZeroes(K + 100, 2 * K)
    model.fill(0, K + 100, 3 * K + 100)
    assert.deepEqual(await device.read(0, SIZE), model)
    await device.close()
    const again = await open(storage)
    assert.deepEqual(await again.read(0, SIZE), model)
    await again.close()
    const result = await checkQcow2(storage)
    assert.equal(result.corruptions, 0)
    assert.equal(result.leaks, 0)
  })
}

test('sectors are numbered by guest offset: one host place, two guest offsets, two ciphertexts', async () => {
  const plain = new Uint8Array(K)
  for (let i = 0; i < K; i++) plain[i] = (i * 7) & 0xff
  const hosts: number[] = []
  const stored: Uint8Array[] = []
  for (const guest of [0, 3 * K]) {
    // A fresh image each: its first data cluster lands at the same host offset.
    const storage = await aesImage()
    const device = await open(storage, true)
    await device.write(guest, plain)
    await device.close()
    const host = await hostOf(storage, guest)
    const bytes = await storage.read(host, K)
    assert.deepEqual(bytes, qemuAes(plain, guest / 512), `guest ${guest}: AES-CBC with the guest sector numbers`)
    hosts.push(host)
    stored.push(bytes)
  }
  assert.equal(hosts[0], hosts[1], 'both guest offsets map to one host offset')
  assert.notDeepEqual(stored[0], stored[1], 'the same plaintext at the same host offset encrypts differently')
})

test('an unaligned in-place write re-encrypts its partial sectors with guest numbers', async () => {
  const storage = await aesImage()
  const device = await open(storage, true)
  await device.write(9 * K, new Uint8Array(K).fill(0x11)) // allocated at the first data cluster
  await device.write(9 * K + 700, new Uint8Array(1000).fill(0x22)) // in place, partial sectors both ends
  await device.close()
  const host = await hostOf(storage, 9 * K)
  assert.notEqual(host, 9 * K, 'host and guest offsets differ')
  const expected = new Uint8Array(K).fill(0x11).fill(0x22, 700, 1700)
  assert.deepEqual(await storage.read(host, K), qemuAes(expected, (9 * K) / 512))
})
