// Reading compressed clusters back: a run of them is one extent, its streams are fetched with few
// host reads and decoded concurrently, errors come from the first bad cluster in guest order,
// and concurrent reads of one cluster share its decoding.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Decompressor } from '../../src/codecs.js'
import { isImageError } from '../../src/errors.js'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'
import { buildQcow2, pattern, type ClusterSpec } from '../helpers/build-qcow2.js'

const CS = 512
const RUN = 24

/** Guest clusters 0..RUN-1 compressed (one run), cluster RUN plain data, then unallocated. */
function runImage() {
  const clusters: Record<number, ClusterSpec> = {}
  for (let i = 0; i < RUN; i++) clusters[i] = { kind: 'compressed', data: pattern(CS, 0x10 + i) }
  clusters[RUN] = { kind: 'data', data: pattern(CS, 0x7e) }
  return buildQcow2({ virtualSize: 64 * CS, clusters })
}

/** Storage that counts reads. */
class CountingStorage extends MemoryStorage {
  reads = 0
  override read(offset: number, length: number): Promise<Uint8Array> {
    this.reads++
    return super.read(offset, length)
  }
}

/** A deflate decompressor that yields to the event loop and records how many run at once. */
function slowInflate(delayFor: (input: Uint8Array) => number = () => 1) {
  const stats = { calls: 0, inFlight: 0, maxInFlight: 0 }
  const inflate = nodeCodecs.deflate!
  const codec: Decompressor = async (input, size) => {
    stats.calls++
    stats.inFlight++
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
    try {
      await new Promise((resolve) => setTimeout(resolve, delayFor(input)))
      return await inflate(input, size)
    } finally {
      stats.inFlight--
    }
  }
  return { codec, stats }
}

test('a run of compressed clusters is one extent, decoded concurrently with few host reads', async () => {
  const img = runImage()
  const storage = new CountingStorage(img.bytes, 'run.qcow2')
  const { codec, stats } = slowInflate()
  const device = await openChain(storage, { codecs: { deflate: codec } })
  const extent = await device.driver.getExtent(0, device.size)
  assert.deepEqual(extent, { kind: 'compressed', length: RUN * CS })
  const status = await device.blockStatus(CS / 2, device.size)
  assert.equal(status.length, RUN * CS - CS / 2)
  const before = storage.reads
  const bytes = await device.read(0, (RUN + 1) * CS)
  assert.deepEqual(bytes, img.guest.subarray(0, (RUN + 1) * CS))
  assert.equal(stats.calls, RUN)
  assert.equal(stats.maxInFlight, RUN, 'every cluster of the run is decoding at once')
  // The streams are packed back to back: one read for the run, one for the data cluster.
  assert.ok(storage.reads - before <= 2, `${storage.reads - before} host reads`)
  await device.close()
})

test('reads inside a run, across its ends and of part of a cluster give the guest bytes', async () => {
  const img = runImage()
  const device = await openChain(new MemoryStorage(img.bytes, 'run.qcow2'), { codecs: nodeCodecs })
  for (const [offset, length] of [[0, 1], [CS - 3, 7], [5 * CS + 100, 3 * CS], [(RUN - 1) * CS + 17, 2 * CS], [0, 64 * CS], [7 * CS, CS]] as const) {
    assert.deepEqual(await device.read(offset, length), img.guest.subarray(offset, offset + length), `${offset}+${length}`)
  }
  await device.close()
})

test('the error of a read is the first bad cluster in guest order, however decoding finishes', async () => {
  const img = runImage()
  for (const bad of [3, 9]) {
    const c = img.layout.compressed.get(bad)!
    img.bytes.fill(0xff, c.hostOffset, c.hostOffset + c.length)
  }
  // The later bad cluster fails first: its stream (all 0xff) is decoded without delay.
  const { codec } = slowInflate((input) => (input[0] === 0xff && input[1] === 0xff ? 0 : 5))
  const device = await openChain(new MemoryStorage(img.bytes, 'bad.qcow2'), { codecs: { deflate: codec } })
  const host = img.layout.compressed.get(3)!.hostOffset
  await assert.rejects(device.read(0, RUN * CS), (e: unknown) => {
    assert.ok(isImageError(e, 'CORRUPT'))
    assert.match(e.message, new RegExp(`^bad\\.qcow2: compressed cluster at guest 0x600 \\(host 0x${host.toString(16)}\\): deflate stream is invalid`))
    assert.equal(e.offset, host)
    return true
  })
  // The clusters before the bad one still read.
  assert.deepEqual(await device.read(0, 3 * CS), img.guest.subarray(0, 3 * CS))
  await device.close()
})

test('concurrent reads of parts of one cluster decode it once', async () => {
  const img = runImage()
  const { codec, stats } = slowInflate()
  const device = await openChain(new MemoryStorage(img.bytes, 'run.qcow2'), { codecs: { deflate: codec } })
  const parts = await Promise.all([0, 128, 256, 384].map((at) => device.read(4 * CS + at, 128)))
  assert.deepEqual(Buffer.concat(parts), Buffer.from(img.guest.subarray(4 * CS, 5 * CS)))
  assert.equal(stats.calls, 1)
  await device.close()
})

test('a write forgets decoded clusters', async () => {
  const img = runImage()
  const storage = new MemoryStorage(img.bytes.slice(), 'run.qcow2')
  const device = await openChain(storage, { codecs: nodeCodecs, writable: true })
  assert.deepEqual(await device.read(2 * CS, 16), img.guest.subarray(2 * CS, 2 * CS + 16))
  await device.write(2 * CS, new Uint8Array(16).fill(0xaa))
  const after = await device.read(2 * CS, 32)
  assert.deepEqual(after.subarray(0, 16), new Uint8Array(16).fill(0xaa))
  assert.deepEqual(after.subarray(16), img.guest.subarray(2 * CS + 16, 2 * CS + 32))
  await device.close()
})

test('a cluster compressed past the old end of file is read and rewritten in the same session', async () => {
  // The stream lands beyond the file size known at open: reads must not clamp it to that size.
  const img = buildQcow2({ virtualSize: 64 * CS, clusters: {} })
  const storage = new MemoryStorage(img.bytes.slice(), 'fresh.qcow2')
  const device = await openChain(storage, { codecs: nodeCodecs, compressors: nodeCompressors, writable: true })
  await device.writeCompressed(0, pattern(CS, 0x31))
  assert.deepEqual(await device.read(0, CS), pattern(CS, 0x31))
  await device.write(64, new Uint8Array(32).fill(0xee))
  const expected = pattern(CS, 0x31)
  expected.fill(0xee, 64, 96)
  assert.deepEqual(await device.read(0, CS), expected)
  await device.close()
})
