// The streamOptimized VMDK stream writer and reader, in memory: what one writes (from pieces
// that do not fall on grain boundaries) the other reads back; a grain behind the previous one
// and a stream cut short are refused with their messages.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemorySink, CountingSink, type ByteSource } from '../../src/io/sink.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'
import { ByteReader } from '../../src/stream/byte-reader.js'
import { openVmdkStream } from '../../src/stream/vmdk-stream-read.js'
import { vmdkStreamWriter } from '../../src/stream/vmdk-stream-write.js'
import { isImageError } from '../../src/errors.js'

/** A byte source over `bytes`, handing out at most `step` bytes a call before the end. */
function memorySource(bytes: Uint8Array, step = 7777): ByteSource {
  let at = 0
  return {
    name: 'memory stream',
    async readInto(into) {
      let n = 0
      while (n < into.length && at < bytes.length) {
        const k = Math.min(into.length - n, step, bytes.length - at)
        into.set(bytes.subarray(at, at + k), n)
        n += k
        at += k
      }
      return n
    },
  }
}

/** A guest of 40 MiB + 3 sectors (two grain tables' spans, a partial last grain) with data here and there. */
function guest(): Uint8Array {
  const g = new Uint8Array(40 * 1024 * 1024 + 3 * 512)
  for (let i = 0; i < 100_000; i++) g[i * 7] = (i % 250) + 1 // the first grains
  g.fill(0x5a, 33 * 1024 * 1024, 33 * 1024 * 1024 + 3000) // inside the second table's span
  g.fill(0xa5, g.length - 700) // the partial last grain
  return g
}

async function writeStream(data: Uint8Array, pieceBytes: number): Promise<Uint8Array> {
  const sink = new MemorySink()
  const out = new CountingSink(sink)
  const writer = vmdkStreamWriter(out, data.length, nodeCompressors.deflateDefault!, { cid: 0x1234 })
  await writer.start()
  for (let at = 0; at < data.length; at += pieceBytes) {
    const piece = data.subarray(at, Math.min(data.length, at + pieceBytes))
    await writer.consume({ offset: at, data: piece, zero: piece.every((b) => b === 0) })
  }
  await writer.end()
  return sink.bytes()
}

async function readStream(bytes: Uint8Array): Promise<Uint8Array> {
  const input = await openVmdkStream(new ByteReader(memorySource(bytes)), nodeCodecs.deflate!)
  const g = new Uint8Array(input.size)
  await input.feed(async (piece) => { g.set(piece.data, piece.offset) })
  return g
}

test('a VMDK stream written from unaligned pieces reads back the same guest', async () => {
  const data = guest()
  const bytes = await writeStream(data, 100_000)
  assert.equal(bytes.length % 512, 0)
  assert.ok(bytes.length < 2 * 1024 * 1024, `zero grains were stored: ${bytes.length} bytes`)
  assert.deepEqual(await readStream(bytes), data)
})

test('a VMDK stream whose grains go backwards is refused', async () => {
  const bytes = await writeStream(guest(), 2 * 1024 * 1024)
  // Swap the addresses of the first two grain markers: the second then lies behind the first.
  const view = new DataView(bytes.buffer, bytes.byteOffset)
  const first = 128 * 512
  const size = view.getUint32(first + 8, true)
  const second = first + Math.ceil((12 + size) / 512) * 512
  view.setBigUint64(first, view.getBigUint64(second, true) , true)
  await assert.rejects(readStream(bytes), (e) => isImageError(e, 'CORRUPT') && /behind the previous grain \(a pipe is read in order\)/.test(e.message))
})

test('a VMDK stream cut inside a grain is refused', async () => {
  const bytes = await writeStream(guest(), 2 * 1024 * 1024)
  await assert.rejects(readStream(bytes.subarray(0, 128 * 512 + 100)), (e) => isImageError(e, 'CORRUPT') && /memory stream: the stream ends at byte \d+ inside a VMDK grain/.test(e.message))
})
