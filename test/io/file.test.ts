// FileStorage: writes land in the order they were issued, whether they run on the calling thread
// (small, nothing queued) or on the thread pool (large), and every failure is a typed IO error.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isImageError } from '../../src/errors.js'
import { FileStorage } from '../../src/io/file.js'
import { prng } from '../helpers/prng.js'

const KiB = 1024

function withDir(run: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qimg-file-'))
    try {
      await run(dir)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

test('overlapping small and large writes issued at once end as if applied in order', withDir(async (dir) => {
  const random = prng(42)
  const size = 2048 * KiB
  const model = new Uint8Array(size)
  const storage = await FileStorage.create(join(dir, 'f.img'))
  const writes: Promise<void>[] = []
  let fileEnd = 0
  for (let i = 0; i < 300; i++) {
    // Mostly small (written at once), some large (queued on the pool): small ones issued while a
    // large one is queued must wait behind it.
    const length = random() < 0.2 ? Math.floor(random() * 600 * KiB) + 65 * KiB : Math.floor(random() * 64 * KiB) + 1
    const offset = Math.floor(random() * (size - length))
    const data = new Uint8Array(length).fill(i % 251 + 1)
    model.set(data, offset)
    fileEnd = Math.max(fileEnd, offset + length)
    writes.push(storage.write(offset, data))
  }
  await Promise.all(writes)
  await storage.flush()
  await storage.close()
  const bytes = readFileSync(join(dir, 'f.img'))
  assert.equal(bytes.length, fileEnd)
  assert.equal(Buffer.compare(bytes, model.subarray(0, fileEnd)), 0, 'the file holds the writes in issue order')
}))

test('a write to a file opened read-only fails with an IO error naming the file, size and offset', withDir(async (dir) => {
  const path = join(dir, 'ro.img')
  writeFileSync(path, new Uint8Array(8192))
  const storage = await FileStorage.open(path)
  try {
    for (const length of [512, 1024 * KiB]) {
      await assert.rejects(storage.write(4096, new Uint8Array(length)), (e: unknown) => {
        assert.ok(isImageError(e, 'IO'), String(e))
        assert.match(e.message, new RegExp(`^Could not write ${length} bytes at 0x1000 to '${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}': `))
        return true
      })
    }
  } finally {
    await storage.close()
  }
}))

test('reads give the same bytes and the same errors on the calling thread and on the pool', withDir(async (dir) => {
  const path = join(dir, 'r.img')
  const content = new Uint8Array(200 * KiB)
  const random = prng(7)
  for (let i = 0; i < content.length; i++) content[i] = Math.floor(random() * 256)
  writeFileSync(path, content)
  const saved = FileStorage.inlineReadBytes
  const storage = await FileStorage.open(path)
  try {
    for (const inline of [0, 64 * KiB]) {
      FileStorage.inlineReadBytes = inline
      for (const [offset, length] of [[0, 4096], [12345, 60000], [100 * KiB, 100 * KiB]] as const) {
        const bytes = await storage.read(offset, length)
        assert.equal(Buffer.compare(bytes, content.subarray(offset, offset + length)), 0, `inline ${inline}: ${length} bytes at ${offset}`)
      }
      await assert.rejects(storage.read(200 * KiB - 100, 4096), (e: unknown) => {
        assert.ok(isImageError(e, 'SHORT_READ'), String(e))
        assert.equal(e.message, `${path}: read of 4096 bytes at 0x31f9c ends past end of file`)
        return true
      })
    }
  } finally {
    FileStorage.inlineReadBytes = saved
    await storage.close()
  }
}))

test('discard punches a hole and writeZeroes zeros a range, in order with queued writes', withDir(async (dir) => {
  const storage = await FileStorage.create(join(dir, 'z.img'))
  try {
    const size = 1024 * KiB
    // A large write (queued on the pool), then the zeroing operations: they apply after it.
    const writes = [storage.write(0, new Uint8Array(size).fill(7)), storage.writeZeroes(256 * KiB, 128 * KiB), storage.discard(512 * KiB, 256 * KiB)]
    await Promise.all(writes)
    const want = new Uint8Array(size).fill(7)
    want.fill(0, 256 * KiB, 384 * KiB)
    const punched = await writes[2]
    if (punched) want.fill(0, 512 * KiB, 768 * KiB)
    assert.deepEqual(await storage.read(0, size), want)
    assert.equal(await storage.size(), size, 'a discard keeps the size')
    // Zeroing past the end grows the file, like a write.
    await storage.writeZeroes(size, 4 * KiB)
    assert.equal(await storage.size(), size + 4 * KiB)
  } finally {
    await storage.close()
  }
}))
