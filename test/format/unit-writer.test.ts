// The generic write path's I/O for partial writes into new units (qcow2 here): into fresh space
// over zeros only the guest's bytes are written and the rest zeroed without writing it (QEMU's
// handle_alloc_space); where the untouched bytes hold data, or the space held something before,
// the unit is written whole (copy-on-write). The journal of the storage shows which happened.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { checkQcow2 } from '../../src/qcow2/check.js'
import { writeSkeleton, type Qcow2CreateOptions } from '../../src/qcow2/create.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import { JournalStorage, type Change } from '../crash/journal.js'
import { memoryHost } from '../helpers/memory-host.js'

const K = 64 * 1024
const SIZE = 1024 * 1024

/** A new qcow2 image of SIZE bytes, as node/create.ts makes one. */
async function newImage(options: Omit<Qcow2CreateOptions, 'size'> = {}): Promise<Uint8Array> {
  const storage = new MemoryStorage(new Uint8Array(0), 'img')
  await writeSkeleton(storage, { size: SIZE, ...options })
  const img = await Qcow2Image.open(storage, { writable: true })
  await img.writer.growL1(1)
  await img.setVirtualSize(SIZE)
  await img.close()
  return storage.bytes().slice()
}

/** The image over a journaling storage, with `base` (raw) as its backing file when given. */
async function open(options: { zeroes?: boolean; base?: Uint8Array } = {}) {
  const initial = await newImage(options.base ? { backingFile: 'base.raw', backingFormat: 'raw' } : {})
  const storage = new JournalStorage(initial, 'img', { zeroes: options.zeroes === true })
  const files: Record<string, Uint8Array> = options.base ? { 'base.raw': options.base } : {}
  const device = await openChain(storage as unknown as MemoryStorage, { format: 'qcow2', writable: true, host: memoryHost(files) })
  return { storage, device, files, initialLength: initial.length }
}

const writes = (journal: readonly Change[], from = 0) => journal.slice(from).filter((c) => c.kind === 'write')

/** Guest data of a test write: at least 512 bytes of its pattern (tables hold few such bytes). */
const holds = (change: { bytes: Uint8Array }, pattern: number) => change.bytes.filter((b) => b === pattern).length >= 512

/** Reopens the journal's file as a crash right now would leave it (every change kept) and reads the guest. */
async function reread(storage: JournalStorage, files: Record<string, Uint8Array>): Promise<Uint8Array> {
  const bytes = new Uint8Array(await storage.read(0, await storage.size()))
  const report = await checkQcow2(new MemoryStorage(bytes.slice(), 'img'))
  assert.ok(report.corruptions === 0 && report.leaks === 0 && report.checkErrors === 0, JSON.stringify(report))
  const device = await openChain(new MemoryStorage(bytes, 'img'), { format: 'qcow2', host: memoryHost(files) })
  const guest = await device.read(0, SIZE)
  await device.close()
  return guest
}

/** What the guest must read: zeros (or `base`) with `pattern` over `[offset, offset+length)`. */
function expected(base: Uint8Array | undefined, offset: number, length: number, pattern: number): Uint8Array {
  const out = new Uint8Array(SIZE)
  if (base) out.set(base.subarray(0, Math.min(SIZE, base.length)))
  return out.fill(pattern, offset, offset + length)
}

describe('partial writes into new clusters', () => {
  it('into fresh space only the guest bytes are written; the storage zeroes the cluster', async () => {
    const { storage, device, files } = await open({ zeroes: true })
    const offset = 3 * K + 4096
    await device.write(offset, new Uint8Array(4096).fill(0x5a))
    await device.flush()
    const data = writes(storage.journal).filter((c) => c.bytes.every((b) => b === 0x5a))
    assert.equal(data.length, 1)
    assert.equal(data[0]!.bytes.length, 4096)
    const cluster = data[0]!.offset - 4096
    assert.ok(storage.journal.some((c) => c.kind === 'zero' && c.offset === cluster && c.length === K), 'the new cluster was zeroed whole')
    assert.ok(!writes(storage.journal).some((c) => c.bytes.length === K && c.offset === cluster), 'no copy-on-write of zeros')
    assert.deepEqual(await reread(storage, files), expected(undefined, offset, 4096, 0x5a))
    await device.close()
  })

  it('without a zeroing storage, one zero byte at the end makes the file cover the cluster', async () => {
    const { storage, device, files } = await open()
    await device.write(5 * K, new Uint8Array(100).fill(0x33))
    const data = writes(storage.journal).find((c) => c.bytes.length === 100)
    assert.ok(data, 'the 100 guest bytes were written alone')
    const end = writes(storage.journal).find((c) => c.bytes.length === 1)
    assert.deepEqual(end && { offset: end.offset, byte: end.bytes[0] }, { offset: data.offset + K - 1, byte: 0 })
    assert.ok((await storage.size()) >= data.offset + K)
    await device.flush()
    assert.deepEqual(await reread(storage, files), expected(undefined, 5 * K, 100, 0x33))
    await device.close()
  })

  it('where the backing file has data, the head and tail are copied into the new cluster', async () => {
    const base = new Uint8Array(SIZE).map((_, i) => (i % 251) + 1)
    const { storage, device, files } = await open({ zeroes: true, base })
    await device.write(2 * K + 512, new Uint8Array(512).fill(0xee))
    await device.flush()
    const whole = writes(storage.journal).filter((c) => holds(c, 0xee))
    assert.deepEqual(whole.map((c) => c.bytes.length), [K], 'one whole cluster written')
    assert.ok(!storage.journal.some((c) => c.kind === 'zero'))
    assert.deepEqual(await reread(storage, files), expected(base, 2 * K + 512, 512, 0xee))
    await device.close()
  })

  it('past the end of a shorter backing file nothing is copied', async () => {
    const base = new Uint8Array(4 * K).fill(0x77)
    const { storage, device, files } = await open({ zeroes: true, base })
    await device.write(8 * K + 1000, new Uint8Array(3000).fill(0x12))
    await device.flush()
    assert.deepEqual(writes(storage.journal).filter((c) => holds(c, 0x12)).map((c) => c.bytes.length), [3000], 'no copy-on-write')
    assert.deepEqual(await reread(storage, files), expected(base, 8 * K + 1000, 3000, 0x12))
    await device.close()
  })

  it('a cluster freed and allocated again is written whole (it is not fresh)', async () => {
    const { storage, device, files } = await open({ zeroes: true })
    await device.write(0, new Uint8Array(K).fill(0x99))
    await device.flush()
    const first = writes(storage.journal).find((c) => c.bytes.length === K && c.bytes[0] === 0x99)!
    await device.discard(0, K)
    await device.flush()
    const mark = storage.journal.length
    await device.write(7 * K + 10, new Uint8Array(10).fill(0x44))
    await device.flush()
    // QEMU's allocator reuses the freed cluster first (free_cluster_index moved back by the free).
    const reused = writes(storage.journal, mark).find((c) => c.offset === first.offset)
    assert.ok(reused && reused.bytes.length === K, 'the reused cluster was written whole, its old bytes replaced')
    const out = expected(undefined, 7 * K + 10, 10, 0x44)
    assert.deepEqual(await reread(storage, files), out)
    await device.close()
  })
})
