// The codec pool: threads start on the first task and are gone after close; its decompressors
// give the inline codecs' bytes, and a corrupt cluster read through it fails exactly as inline.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { openChain, type OpenChainOptions } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'
import { openImage } from '../../src/node/open.js'
import { CodecPool, decodeThreads } from '../../src/node/pool.js'
import { convertImage } from '../../src/commands/convert.js'
import { writeSkeleton } from '../../src/qcow2/create.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import { CASES, FILE } from '../failure/cases.js'
import { buildQcow2, pattern } from '../helpers/build-qcow2.js'
import { prng } from '../helpers/prng.js'

/** Half compressible text, half noise: what a disk cluster looks like. */
function diskLike(size: number, seed: number): Uint8Array {
  const random = prng(seed)
  const out = pattern(size, seed)
  for (let i = size / 2; i < size; i++) out[i] = random() < 0.3 ? Math.floor(random() * 256) : 0x20
  return out
}

/** A qcow2 image in memory whose first `clusters` clusters are written compressed with `type`. */
async function compressedImage(type: 'zlib' | 'zstd', clusters: number, clusterSize = 65536): Promise<{ bytes: Uint8Array; guest: Uint8Array }> {
  const storage = new MemoryStorage(new Uint8Array(0), FILE)
  const size = clusters * clusterSize * 2
  await writeSkeleton(storage, { size, clusterSize, compressionType: type })
  // As createQcow2 does on a file: the L1 table, then the size.
  const image = await Qcow2Image.open(storage, { writable: true })
  await image.writer.growL1(Math.ceil(size / (clusterSize * (clusterSize / 8))))
  await image.setVirtualSize(size)
  await image.close()
  const device = await openChain(storage, { writable: true, compressors: nodeCompressors, codecs: nodeCodecs })
  const guest = new Uint8Array(device.size)
  for (let i = 0; i < clusters; i++) {
    const data = diskLike(clusterSize, i + 1)
    guest.set(data, i * clusterSize)
    await device.writeCompressed(i * clusterSize, data)
  }
  await device.close()
  return { bytes: storage.bytes().slice(), guest }
}

/** Asserts equal bytes (whatever the view types). */
function same(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(Buffer.compare(actual, expected), 0, what)
}

/** Reads the whole disk of `bytes` with `options`; the error, or the bytes. */
async function readAll(bytes: Uint8Array, options: OpenChainOptions): Promise<{ error?: unknown; bytes?: Uint8Array }> {
  const device = await openChain(new MemoryStorage(bytes.slice(), FILE), options)
  try {
    return { bytes: await device.read(0, device.size) }
  } catch (error) {
    return { error }
  } finally {
    await device.close()
  }
}

test('a pool starts threads on its first task only; close ends them and refuses more work', async () => {
  const before = CodecPool.liveThreads
  const pool = new CodecPool(2)
  assert.equal(pool.threads, 0)
  const codecs = pool.decompressors()
  const small = nodeCompressors.deflate!(pattern(4096, 9), 4096) as Uint8Array
  same(await codecs.deflate!(small, 4096), pattern(4096, 9), 'inflated on this thread')
  assert.equal(pool.threads, 0, 'a cluster under 16 KiB is not worth a thread')
  const input = nodeCompressors.deflate!(pattern(65536, 9), 65536) as Uint8Array
  same(await codecs.deflate!(input, 65536), pattern(65536, 9), 'inflated')
  assert.equal(pool.threads, 1)
  assert.equal(CodecPool.liveThreads, before + 1)
  await pool.close()
  assert.equal(pool.threads, 0)
  assert.equal(CodecPool.liveThreads, before)
  await assert.rejects(async () => codecs.deflate!(input, 65536), /codec pool is closed/)
})

test('pool decompressors give the inline codecs\' bytes, also for streams inside a larger buffer', async () => {
  const pool = new CodecPool(2)
  try {
    for (const codec of ['deflate', 'zstd'] as const) {
      const clusters = Array.from({ length: 16 }, (_, i) => diskLike(65536, 100 + i))
      const streams = clusters.map((c) => nodeCompressors[codec]!(c, 65536) as Uint8Array)
      // One buffer holding every stream, as one host read of a run does.
      const packed = new Uint8Array(streams.reduce((n, s) => n + s.length, 0))
      let at = 0
      const views = streams.map((s) => {
        packed.set(s, at)
        at += s.length
        return packed.subarray(at - s.length, at)
      })
      const decoded = await Promise.all(views.map((v) => pool.decompressor(codec)(v, 65536)))
      for (const [i, d] of decoded.entries()) {
        same(d, nodeCodecs[codec]!(views[i]!, 65536) as Uint8Array, `${codec} cluster ${i}`)
        same(d, clusters[i]!, `${codec} cluster ${i}`)
      }
      assert.equal(packed.byteLength, at, 'the caller\'s buffer is left intact')
    }
  } finally {
    await pool.close()
  }
})

test('corrupt compressed clusters read through the pool fail as inline: same code, message and offset', async () => {
  // The failure images have 512-byte clusters: send even those to the threads.
  const pool = new CodecPool(2, { inlineBelow: 0 })
  try {
    const cases = CASES.filter((c) => c.step === 'read' && c.name.includes('compressed'))
    assert.ok(cases.length >= 4)
    const images = cases.map((c) => ({ name: c.name, bytes: c.make().bytes }))
    // zstd: a zstd image whose second stream lost its frame magic.
    const zstd = await compressedImage('zstd', 3)
    const magic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])
    const second = Buffer.from(zstd.bytes).indexOf(magic, Buffer.from(zstd.bytes).indexOf(magic) + 1)
    zstd.bytes.fill(0, second, second + 4)
    images.push({ name: 'zstd frame without magic', bytes: zstd.bytes })
    for (const image of images) {
      const inline = await readAll(image.bytes, { codecs: nodeCodecs })
      const pooled = await readAll(image.bytes, { codecs: pool.decompressors() })
      assert.ok(isImageError(inline.error), `${image.name}: inline gave ${String(inline.error)}`)
      assert.ok(isImageError(pooled.error), `${image.name}: pool gave ${String(pooled.error)}`)
      assert.equal(pooled.error.code, inline.error.code, image.name)
      assert.equal(pooled.error.message, inline.error.message, image.name)
      assert.equal(pooled.error.offset, inline.error.offset, image.name)
    }
  } finally {
    await pool.close()
  }
})

test('convert through a pool: threads only for a compressed source, the same bytes, none left after close', async () => {
  const cs = 65536
  const compressed = buildQcow2({ clusterBits: 16, virtualSize: 96 * cs, clusters: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [i + (i >> 3), { kind: 'compressed', data: diskLike(cs, i) }])) })
  const plain = buildQcow2({ clusterBits: 16, virtualSize: 96 * cs, clusters: { 3: { kind: 'data', data: pattern(cs, 3) } } })
  for (const [name, img, expectThreads] of [['compressed', compressed, true], ['plain', plain, false]] as const) {
    const pool = new CodecPool(2)
    const source = await openImage(new MemoryStorage(img.bytes, `${name}.qcow2`), { pool })
    const target = await openChain(new MemoryStorage(new Uint8Array(source.size), 'out.raw'), { format: 'raw', writable: true })
    await convertImage(source, target)
    same(await target.read(0, target.size), img.guest, name)
    assert.equal(pool.threads > 0, expectThreads, `${name}: ${pool.threads} threads`)
    await source.close()
    await target.close()
    await pool.close()
    assert.equal(pool.threads, 0)
  }
})

test('zlib and zstd images written by qimg read back the same through the pool and inline', async () => {
  const pool = new CodecPool()
  try {
    for (const type of ['zlib', 'zstd'] as const) {
      const img = await compressedImage(type, 8)
      const inline = await readAll(img.bytes, { codecs: nodeCodecs })
      const pooled = await readAll(img.bytes, { codecs: pool.decompressors() })
      same(inline.bytes!, img.guest, `${type} inline`)
      same(pooled.bytes!, img.guest, `${type} pool`)
    }
  } finally {
    await pool.close()
  }
})

test('pool compressors give the inline compressors\' streams, from plain and from shared memory', async () => {
  const pool = new CodecPool(2)
  try {
    const compressors = pool.compressors()
    const inputs = [diskLike(65536, 1), diskLike(65536, 2), pattern(65536, 3), new Uint8Array(65536).fill(7)]
    // The same inputs again in one shared buffer (as convert's chunk buffer): read in place.
    const shared = new Uint8Array(new SharedArrayBuffer(inputs.length * 65536))
    inputs.forEach((input, i) => shared.set(input, i * 65536))
    const sharedInputs = inputs.map((_, i) => shared.subarray(i * 65536, (i + 1) * 65536))
    for (const codec of ['deflate', 'zstd'] as const) {
      const results = await Promise.all([...inputs, ...sharedInputs].map((input) => compressors[codec]!(input, 65536)))
      results.forEach((result, i) => {
        const expected = nodeCompressors[codec]!(inputs[i % inputs.length]!, 65536) as Uint8Array | undefined
        if (expected === undefined) assert.equal(result, undefined, `${codec} input ${i}: not smaller`)
        else same(result!, expected, `${codec} input ${i}`)
      })
    }
    // Noise does not compress: stored as it is, as QEMU does.
    const noise = new Uint8Array(65536)
    const random = prng(5)
    for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(random() * 256)
    assert.equal(await compressors.zstd!(noise, 65536), undefined)
    assert.equal(await compressors.deflate!(noise, 65536), undefined)
  } finally {
    await pool.close()
  }
})

test('pool decompressors write into the caller\'s buffer: in place when it is shared, copied when not', async () => {
  const pool = new CodecPool(2)
  try {
    for (const codec of ['deflate', 'zstd'] as const) {
      const decompress = pool.decompressor(codec)
      const clusters = [diskLike(65536, 11), diskLike(65536, 12)]
      const streams = clusters.map((c) => nodeCompressors[codec]!(c, 65536) as Uint8Array)
      const shared = new Uint8Array(new SharedArrayBuffer(2 * 65536))
      const intos = [shared.subarray(0, 65536), shared.subarray(65536)]
      const results = await Promise.all(streams.map((s, i) => decompress(s, 65536, intos[i])))
      results.forEach((r, i) => assert.equal(r, intos[i], `${codec} cluster ${i}: the very view given`))
      same(shared, new Uint8Array([...clusters[0]!, ...clusters[1]!]), `${codec}: both clusters in place`)
      const plain = new Uint8Array(65536)
      assert.equal(await decompress(streams[1]!, 65536, plain), plain)
      same(plain, clusters[1]!, `${codec}: copied into a plain buffer`)
      same(await decompress(streams[0]!, 65536), clusters[0]!, `${codec}: no buffer given`)
    }
  } finally {
    await pool.close()
  }
})

test('decodeThreads leaves a core to the calling thread, and never gives less than one', () => {
  assert.equal(decodeThreads(1), 1)
  assert.equal(decodeThreads(2), 1)
  assert.equal(decodeThreads(8), 7)
})

test('closing a pool settles every task it holds, queued or running: none is left waiting', async () => {
  const pool = new CodecPool(1)
  const decompress = pool.decompressor('deflate')
  const stream = nodeCompressors.deflate!(diskLike(65536, 21), 65536) as Uint8Array
  // More than DEPTH batches: some run, some wait in the worker's port, the rest in the queue.
  const tasks = Promise.allSettled(Array.from({ length: 200 }, () => decompress(stream, 65536)))
  await new Promise((resolve) => setTimeout(resolve, 5))
  await pool.close()
  const settled = await tasks
  for (const result of settled) {
    if (result.status === 'rejected') assert.match(String(result.reason), /codec pool is closed/)
    else same(result.value, diskLike(65536, 21), 'a task that finished before the close')
  }
  assert.ok(settled.some((r) => r.status === 'rejected'), 'the close came before the end')
})
