// QCOW version 1 in memory: create, write, reopen and read back (plain, partial sectors,
// compressed, AES, over a backing file); hostile headers and tables give typed ImageErrors
// carrying QEMU's qcow_open text, and never make qimg allocate what the header claims.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { ImageError, isImageError, type ErrorCode } from '../../src/errors.js'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import { createQcow, qcowImageBytes } from '../../src/qcow/create.js'
import { HEADER_LENGTH, QCOW_MAGIC, decodeHeader, encodeHeader, type QcowHeader } from '../../src/qcow/header.js'
import { qcowModule } from '../../src/qcow/module.js'
import { compressedEntry } from '../../src/qcow/tables.js'
import { memoryHost } from '../helpers/memory-host.js'

const KEY = new TextEncoder().encode('abc')

async function created(size: number, options: Record<string, string> = {}, secret?: Uint8Array): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), 'm.qcow')
  await createQcow({ storage, size, options: new Map(Object.entries(options)), secret, crypto: nodeCrypto, compressors: nodeCompressors })
  return storage
}

function open(storage: MemoryStorage, extra: { writable?: boolean; secret?: Uint8Array; host?: ReturnType<typeof memoryHost> } = {}) {
  return openChain(storage, {
    format: 'qcow', codecs: nodeCodecs, compressors: nodeCompressors, crypto: nodeCrypto,
    writable: extra.writable ?? false, host: extra.host, ...(extra.secret ? { secret: async () => extra.secret } : {}),
  })
}

function fill(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff
  return out
}

/** Writes `ops` to both the image and a plain model of the guest, then checks both reads agree. */
async function roundTrip(storage: MemoryStorage, size: number, ops: [number, Uint8Array][], secret?: Uint8Array, model = new Uint8Array(size)) {
  const device = await open(storage, { writable: true, secret })
  for (const [offset, data] of ops) {
    await device.write(offset, data)
    model.set(data, offset)
  }
  assert.deepEqual(await device.read(0, size), model, 'before reopening')
  await device.close()
  const again = await open(new MemoryStorage(storage.bytes().slice(), 'm.qcow'), { secret })
  assert.deepEqual(await again.read(0, size), model, 'after reopening')
  await again.close()
  return model
}

describe('qcow in memory', () => {
  it('probes version 1 and not version 2', () => {
    const bytes = qcowImageBytes(1 << 20, undefined, false)
    assert.equal(qcowModule.probe!(bytes, bytes.length, 'x'), 100)
    const v2 = bytes.slice()
    v2[7] = 2
    assert.equal(qcowModule.probe!(v2, v2.length, 'x'), 0)
    assert.equal(qcowModule.probe!(bytes.subarray(0, HEADER_LENGTH - 1), HEADER_LENGTH - 1, 'x'), 0)
  })

  it('creates the layout qcow_co_create writes', () => {
    const plain = decodeHeader(qcowImageBytes(10 << 20, undefined, false))
    assert.equal(plain.clusterBits, 12)
    assert.equal(plain.l2Bits, 9)
    assert.equal(plain.l1TableOffset, 48n)
    const backed = qcowImageBytes(10 << 20, 'base.img', true)
    const h = decodeHeader(backed)
    assert.equal(h.clusterBits, 9)
    assert.equal(h.l2Bits, 12)
    assert.equal(h.cryptMethod, 1)
    assert.equal(h.backingFileOffset, 48n)
    assert.equal(h.backingFileSize, 8)
    assert.equal(h.l1TableOffset, 56n)
    assert.equal(new TextDecoder().decode(backed.subarray(48, 56)), 'base.img')
    // 10 MiB / 2 MiB per L2 table: 5 entries, one zero sector.
    assert.equal(backed.length, 56 + 512)
  })

  it('writes whole clusters, partial sectors and across L2 tables, and reads them back', async () => {
    const size = 3 * 1024 * 1024 + 512 // more than one L2 table (2 MiB each), not a cluster multiple
    const storage = await created(size)
    await roundTrip(storage, size, [
      [0, fill(4096, 1)], [4096 + 100, fill(50, 2)], [2 * 1024 * 1024 - 3000, fill(6000, 3)],
      [size - 700, fill(700, 4)], [4096 + 120, fill(10, 5)], [8191, fill(2, 6)],
    ])
    // Nothing but the header, L1, two L2 tables and the touched clusters.
    assert.equal(storage.bytes().length % 4096, 0)
  })

  it('compressed clusters read back, and a later write into one keeps its other bytes', async () => {
    const size = 1024 * 1024
    const storage = await created(size)
    const device = await open(storage, { writable: true })
    const model = new Uint8Array(size)
    const cluster = fill(4096, 9)
    cluster.fill(0x41, 1000, 3000)
    await device.writeCompressed(8192, cluster)
    model.set(cluster, 8192)
    const status = await device.blockStatus(8192, 4096)
    assert.equal(status.length, 4096)
    assert.deepEqual(await device.read(0, size), model)
    await device.write(8192 + 10, fill(20, 10))
    model.set(fill(20, 10), 8192 + 10)
    assert.deepEqual(await device.read(0, size), model)
    await assert.rejects(device.writeCompressed(100, cluster), (e) => isImageError(e, 'INVALID_ARGUMENT'))
    await device.close()
  })

  it('AES images round-trip with the key and refuse to open without it', async () => {
    const size = 1024 * 1024
    const storage = await created(size, { 'encrypt.format': 'aes', 'encrypt.key-secret': 'sec0' }, KEY)
    assert.equal(decodeHeader(storage.bytes()).cryptMethod, 1)
    await roundTrip(storage, size, [[0, fill(4096, 1)], [5000, fill(3000, 2)], [size - 1, fill(1, 3)]], KEY)
    // The stored sectors are not the plain bytes.
    assert.equal(Buffer.from(storage.bytes()).indexOf(Buffer.from(fill(4096, 1).subarray(0, 64))), -1)
    await assert.rejects(open(storage), (e) => isImageError(e, 'BAD_KEY') && (e as ImageError).qemuText === "Parameter 'encrypt.key-secret' is required for cipher")
    const device = await open(storage, { writable: true, secret: KEY })
    await assert.rejects(device.writeCompressed(0, new Uint8Array(4096)), (e) => isImageError(e, 'UNSUPPORTED') && /Compression and encryption/.test((e as Error).message))
    await device.close()
  })

  it('an overlay reads its backing file where it has no cluster and takes no copy-on-write', async () => {
    const size = 64 * 1024
    const base = fill(size, 77)
    const storage = await created(size, { backing_file: 'base.raw' })
    const host = memoryHost({ 'base.raw': base })
    const device = await open(storage, { writable: true, host })
    assert.equal(device.driver.backing?.name, 'base.raw')
    assert.deepEqual(await device.read(0, size), base)
    // 512-byte clusters: a write of part of a sector keeps the rest of that sector from the base.
    await device.write(1000, fill(30, 1))
    const model = base.slice()
    model.set(fill(30, 1), 1000)
    assert.deepEqual(await device.read(0, size), model)
    await device.close()
    assert.deepEqual(host.opened, ['base.raw'])
  })

  it('create refuses what qcow_co_create refuses', async () => {
    const refuse = async (size: number, options: Record<string, string>, code: ErrorCode, text: string, secret?: Uint8Array) => {
      await assert.rejects(created(size, options, secret), (e) => isImageError(e, code) && (e as Error).message === text)
    }
    await refuse(0, {}, 'INVALID_ARGUMENT', 'Image size is too small, cannot be zero length')
    await refuse(1 << 20, { 'encrypt.format': 'aes' }, 'BAD_KEY', "Parameter 'encrypt.key-secret' is required for cipher")
    await refuse(1 << 20, { 'encrypt.format': 'luks' }, 'INVALID_ARGUMENT', 'Unsupported encryption format')
    await refuse(1 << 20, { 'encrypt.format': 'foo' }, 'INVALID_ARGUMENT', "Parameter 'format' does not accept value 'foo'")
    await refuse(1 << 20, { encryption: 'yes' }, 'INVALID_ARGUMENT', "Parameter 'format' does not accept value 'yes'")
    await refuse(1 << 20, { encryption: 'on', 'encrypt.format': 'aes' }, 'INVALID_ARGUMENT', "'encrypt.format' and its alias 'encryption' can't be used at the same time")
    // encryption=off is dropped before the alias check; encrypt.format=qcow is the QAPI name of aes.
    const off = await created(1 << 20, { encryption: 'off', 'encrypt.format': 'aes' }, KEY)
    assert.equal(decodeHeader(off.bytes()).cryptMethod, 1)
    const qcow = await created(1 << 20, { 'encrypt.format': 'qcow' }, KEY)
    assert.equal(decodeHeader(qcow.bytes()).cryptMethod, 1)
    // The size is rounded up to whole sectors.
    assert.equal(decodeHeader((await created(1000)).bytes()).size, 1024n)
  })
})

/** A valid 1 MiB image's header with `change` applied, and the image bytes after it. */
function hostile(change: Partial<QcowHeader>, tail?: Uint8Array): MemoryStorage {
  const bytes = qcowImageBytes(1 << 20, undefined, false)
  const header = { ...decodeHeader(bytes), ...change }
  const out = new Uint8Array(Math.max(bytes.length, tail ? HEADER_LENGTH + tail.length : 0))
  out.set(bytes)
  out.set(encodeHeader(header))
  if (tail) out.set(tail, HEADER_LENGTH)
  return new MemoryStorage(out, 'h.qcow')
}

describe('qcow hostile headers', () => {
  const cases: [string, Partial<QcowHeader>, ErrorCode, string][] = [
    ['magic', { magic: 0x12345678 }, 'NOT_AN_IMAGE', 'Image not in qcow format'],
    ['version 2', { version: 2 }, 'UNSUPPORTED', "qcow (v1) does not support qcow version 2\nTry the 'qcow2' driver instead."],
    ['version 3', { version: 3 }, 'UNSUPPORTED', "qcow (v1) does not support qcow version 3\nTry the 'qcow2' driver instead."],
    ['version 7', { version: 7 }, 'UNSUPPORTED', 'qcow (v1) does not support qcow version 7'],
    ['size 0', { size: 0n }, 'CORRUPT', 'Image size is too small (must be at least 2 bytes)'],
    ['size 1', { size: 1n }, 'CORRUPT', 'Image size is too small (must be at least 2 bytes)'],
    ['cluster_bits 8', { clusterBits: 8 }, 'CORRUPT', 'Cluster size must be between 512 and 64k'],
    ['cluster_bits 17', { clusterBits: 17 }, 'CORRUPT', 'Cluster size must be between 512 and 64k'],
    ['l2_bits 5', { l2Bits: 5 }, 'CORRUPT', 'L2 table size must be between 512 and 64k'],
    ['l2_bits 14', { l2Bits: 14 }, 'CORRUPT', 'L2 table size must be between 512 and 64k'],
    ['crypt_method 2', { cryptMethod: 2 }, 'CORRUPT', 'invalid encryption method in qcow header'],
    ['size near 2^64', { size: 0xfffffffffffff000n }, 'CORRUPT', 'Image too large'],
    ['L1 over INT_MAX bytes', { size: 1n << 48n, clusterBits: 9, l2Bits: 6 }, 'CORRUPT', 'Image too large'],
    ['backing name of 1024 bytes', { backingFileOffset: 48n, backingFileSize: 1024 }, 'CORRUPT', 'Backing file name too long'],
  ]
  for (const [name, change, code, text] of cases) {
    it(`${name}: ${code}, "${text.split('\n')[0]}"`, async () => {
      await assert.rejects(open(hostile(change)), (e) => {
        assert.ok(e instanceof ImageError, String(e))
        assert.equal(e.code, code)
        assert.equal(e.qemuText, text)
        assert.match(e.message, /^h\.qcow: qcow header at 0x[0-9a-f]+: /)
        return true
      })
    })
  }

  it('a huge L1 table is read only as far as the file goes (zeros beyond, as QEMU reads past EOF)', async () => {
    // 2^52 bytes with 64 KiB clusters and 8192-entry L2 tables: 2^23 L1 entries (64 MiB) claimed.
    const storage = hostile({ size: 1n << 52n, clusterBits: 16, l2Bits: 13, l1TableOffset: 48n })
    const device = await open(storage)
    assert.equal(device.size, 2 ** 52)
    assert.deepEqual(await device.read(2 ** 52 - 4096, 4096), new Uint8Array(4096))
    await device.close()
  })

  it('an L1 table past the end of the file reads as unallocated', async () => {
    const device = await open(hostile({ l1TableOffset: 1n << 40n }))
    assert.deepEqual(await device.read(0, 8192), new Uint8Array(8192))
    await device.close()
  })

  it('a data cluster off a sector boundary and a compressed cluster that does not inflate are CORRUPT', async () => {
    // L1[0] -> L2 at 4096; L2[0] data at 4097 (unaligned), L2[1] compressed garbage at 8192.
    const bytes = new Uint8Array(12288)
    bytes.set(qcowImageBytes(1 << 20, undefined, false))
    const view = new DataView(bytes.buffer)
    view.setBigUint64(48, 4096n)
    view.setBigUint64(4096, 4097n)
    const g = { clusterBits: 12, clusterSize: 4096, l2Bits: 9, l2Size: 512, l1Size: 1, virtualSize: 1 << 20 }
    view.setBigUint64(4096 + 8, compressedEntry(8192, 100, g))
    bytes.fill(0xee, 8192, 8292)
    const device = await open(new MemoryStorage(bytes, 'h.qcow'))
    await assert.rejects(device.read(0, 512), (e) => isImageError(e, 'CORRUPT') && /not a multiple of 512/.test((e as Error).message))
    await assert.rejects(device.read(4096, 512), (e) => isImageError(e, 'CORRUPT') && /does not inflate/.test((e as Error).message))
    await device.close()
  })

  it('the magic constant is QFI\\xfb', () => {
    assert.equal(QCOW_MAGIC, 0x514649fb)
  })
})
