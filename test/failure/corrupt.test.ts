// One test per validation rule: a hand-corrupted image must give an ImageError with the right
// code, a message naming the file, structure and offset, and never open a file it names
// unless allowed (CVE-2024-32498: json:/protocol names, untrusted images).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImageError, isImageError, type ErrorCode } from '../../src/errors.js'
import { MAX_CHAIN_DEPTH, openChain, type OpenChainOptions } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs } from '../../src/node/codecs.js'
import { openImage } from '../../src/node/open.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import { mapImage } from '../../src/commands/map.js'
import { checkQcow2 } from '../../src/qcow2/check.js'
import { buildQcow2, l2EntryOffset, pattern, type BuiltImage } from '../helpers/build-qcow2.js'
import { poke, pokeSnapshot } from '../helpers/poke.js'
import { memoryHost } from '../helpers/memory-host.js'
import { backingBitmapsImage, dataFileImage, plainImage, snapshotImage } from './bases.js'
import { CASES, FILE, type CorruptCase } from './cases.js'

/** The error `step` of `c` raises (undefined when nothing failed). */
async function errorOf(c: CorruptCase, bytes: Uint8Array): Promise<unknown> {
  const storage = new MemoryStorage(bytes, FILE)
  let image: Qcow2Image
  try {
    image = await Qcow2Image.open(storage, { codecs: nodeCodecs, snapshot: c.snapshot })
  } catch (e) {
    if (c.step === 'open') return e
    throw new Error(`${c.name}: open failed, ${c.step} was expected to: ${(e as Error).message}`)
  }
  try {
    if (c.step === 'open') return undefined
    if (c.step === 'info') return await image.info().then(() => undefined, (e: unknown) => e)
    for (let offset = 0; offset < image.virtualSize;) {
      const extent = await image.getExtent(offset, image.virtualSize - offset)
      if (extent.kind === 'compressed') await image.readEncoded(offset, extent.length)
      offset += extent.length
    }
    return undefined
  } catch (e) {
    return e
  } finally {
    await image.close()
  }
}

for (const c of CASES) {
  test(`${c.code}: ${c.name}`, async () => {
    const { bytes, message, offset } = c.make()
    const err = await errorOf(c, bytes)
    assert.ok(err !== undefined, `${c.step} succeeded; expected ${c.code} ${message}`)
    assert.ok(isImageError(err), `not an ImageError: ${(err as Error).stack}`)
    assert.equal(err.code, c.code, err.message)
    assert.match(err.message, message)
    if (offset !== undefined) assert.equal(err.offset, offset, `offset of: ${err.message}`)
  })
}

/** Asserts `promise` rejects with an ImageError of `code` whose message matches `message`. */
async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<ImageError> {
  let caught: unknown
  await assert.rejects(promise, (e: unknown) => {
    caught = e
    return true
  })
  assert.ok(isImageError(caught), `not an ImageError: ${(caught as Error).stack}`)
  assert.equal(caught.code, code, caught.message)
  assert.match(caught.message, message)
  return caught
}

const openMemory = (img: BuiltImage, options: OpenChainOptions) =>
  openChain(new MemoryStorage(img.bytes, FILE), { codecs: nodeCodecs, ...options })

test('an L1 entry with only the COPIED flag is unallocated: the header is never read as an L2 table', async () => {
  const img = plainImage()
  poke(img.bytes, img.layout.l1TableOffset, 8, 1n << 63n)
  const device = await openMemory(img, {})
  const data = await device.read(0, 512)
  assert.deepEqual(data, new Uint8Array(512))
  assert.deepEqual(await device.blockStatus(0, 512), { start: 0, length: 512, depth: 0, present: false, zero: true, data: false, offset: undefined, file: undefined })
})

test('a snapshot disk size far beyond its L1 table does not drive the work done reading it', async () => {
  const img = snapshotImage()
  const entry = img.layout.snapshots[1]!.entryOffset
  poke(img.bytes, entry + 40 + 8, 8, 2 ** 52) // extra data: disk size 4 PiB
  const device = await openMemory(img, { snapshot: 'own' })
  assert.equal(device.size, 65536) // the disk keeps its size (QEMU's qcow2_snapshot_load_tmp)
  const entries = await mapImage(device)
  assert.deepEqual(entries.map((e) => [e.start, e.length, e.data]), [[0, 1024, false], [1024, 512, true], [1536, 65536 - 1536, false]])
})

// File names stored in an image are never interpreted as protocols or json: (CVE-2024-32498).
for (const name of ['json:{"file":{"driver":"nbd","host":"evil.example","port":"10809"}}', 'nbd://evil.example/export', 'http://evil.example/disk.qcow2']) {
  test(`DENIED: backing file name '${name.slice(0, 12)}…' is never opened`, async () => {
    const host = memoryHost({ [name]: plainImage().bytes })
    const img = backingBitmapsImage(name)
    const err = await rejectsWith(openMemory(img, { host }), 'DENIED', /^bad\.qcow2: backing file '.*' is a protocol or json: specification; qimg only opens plain file names$/)
    assert.ok(err.message.includes(name))
    assert.deepEqual(host.opened, [])
  })
}

test('DENIED: an external data file named json:{…} is never opened', async () => {
  const name = 'json:{"driver":"file","filename":"/etc/shadow"}'
  const host = memoryHost({ [name]: new Uint8Array(16384) })
  await rejectsWith(openMemory(dataFileImage(name), { host }), 'DENIED', /^bad\.qcow2: external data file 'json:\{.*\}' is a protocol or json: specification/)
  assert.deepEqual(host.opened, [])
})

test(`DENIED: fileReferences 'deny' refuses a plain backing file and names it`, async () => {
  const host = memoryHost({ 'base.qcow2': plainImage().bytes })
  await rejectsWith(openMemory(backingBitmapsImage(), { host, fileReferences: 'deny' }), 'DENIED',
    /^bad\.qcow2: the image names backing file 'base\.qcow2' and opening files named by images is not allowed$/)
  assert.deepEqual(host.opened, [])
})

test(`DENIED: fileReferences 'deny' refuses an external data file and names it`, async () => {
  const img = dataFileImage()
  const host = memoryHost({ 'disk.raw': img.dataFile! })
  await rejectsWith(openMemory(img, { host, fileReferences: 'deny' }), 'DENIED',
    /^bad\.qcow2: the image names an external data file 'disk\.raw' and opening it is not allowed$/)
  assert.deepEqual(host.opened, [])
  // With 'follow' the same image opens, reading its data from the data file.
  const device = await openMemory(img, { host })
  assert.deepEqual(await device.read(0, 16384), img.guest)
  assert.deepEqual(host.opened, ['disk.raw'])
})

test(`DENIED: openImage with fileReferences 'deny' opens only the file it was given`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qimg-deny-'))
  try {
    writeFileSync(join(dir, 'base.qcow2'), plainImage().bytes)
    writeFileSync(join(dir, 'top.qcow2'), backingBitmapsImage('base.qcow2').bytes)
    await rejectsWith(openImage(join(dir, 'top.qcow2'), { fileReferences: 'deny' }), 'DENIED', /top\.qcow2: the image names backing file 'base\.qcow2'/)
    const device = await openImage(join(dir, 'top.qcow2'))
    assert.equal(device.chain.length, 2)
    await device.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('CORRUPT: a backing loop a → b → a is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qimg-loop-'))
  try {
    writeFileSync(join(dir, 'a.qcow2'), backingBitmapsImage('b.qcow2').bytes)
    writeFileSync(join(dir, 'b.qcow2'), backingBitmapsImage('a.qcow2').bytes)
    const err = await rejectsWith(openImage(join(dir, 'a.qcow2')), 'CORRUPT', /b\.qcow2: backing file 'a\.qcow2' forms a loop in the backing chain$/)
    assert.equal(err.file, join(dir, 'b.qcow2'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('CORRUPT: an image that is its own backing file is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qimg-loop-'))
  try {
    writeFileSync(join(dir, 'self.qcow2'), backingBitmapsImage('self.qcow2').bytes)
    await rejectsWith(openImage(join(dir, 'self.qcow2')), 'CORRUPT', /self\.qcow2: backing file 'self\.qcow2' forms a loop in the backing chain$/)
    // Through a different spelling of the same file, too.
    writeFileSync(join(dir, 'dot.qcow2'), backingBitmapsImage('./dot.qcow2').bytes)
    await rejectsWith(openImage(join(dir, 'dot.qcow2')), 'CORRUPT', /dot\.qcow2: backing file '\.\/dot\.qcow2' forms a loop/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test(`CORRUPT: a backing chain deeper than ${MAX_CHAIN_DEPTH} images is refused`, async () => {
  const files: Record<string, Uint8Array> = {}
  const layer = (i: number) => buildQcow2({ virtualSize: 4096, backingFile: `layer${i + 1}.qcow2`, clusters: { 0: { kind: 'data', data: pattern(512, i) } } }).bytes
  for (let i = 0; i <= MAX_CHAIN_DEPTH + 1; i++) files[`layer${i}.qcow2`] = layer(i)
  const host = memoryHost(files)
  await rejectsWith(openChain(new MemoryStorage(files['layer0.qcow2'], 'layer0.qcow2'), { host }), 'CORRUPT', /^layer0\.qcow2: backing chain is deeper than 64 images$/)
  assert.equal(host.opened.length, MAX_CHAIN_DEPTH - 1)
  // A chain of exactly 64 images opens.
  files[`layer${MAX_CHAIN_DEPTH - 1}.qcow2`] = buildQcow2({ virtualSize: 4096 }).bytes
  const device = await openChain(new MemoryStorage(files['layer0.qcow2'], 'layer0.qcow2'), { host: memoryHost(files) })
  assert.equal(device.chain.length, MAX_CHAIN_DEPTH)
  await device.close()
})

test('check skips a snapshot whose L1 table is over 32 MiB, as QEMU does, without reading it', async () => {
  const img = snapshotImage()
  pokeSnapshot(img.bytes, img.layout.snapshots[0]!.entryOffset, 'l1Size', 0x0800_0002) // a 1 GiB table
  const lines: string[] = []
  const started = process.cpuUsage()
  const result = await checkQcow2(new MemoryStorage(img.bytes, FILE), { report: (line) => lines.push(line) })
  const cpu = process.cpuUsage(started)
  assert.ok((cpu.user + cpu.system) / 1000 < 1000, 'bounded work')
  assert.ok(result.corruptions >= 1)
  assert.ok(lines.includes('ERROR snapshot 1 (shared) l1_size=0x8000002: L1 size is too large; snapshot table entry corrupted'), lines.join('\n'))
})

test('check does not load a bitmap table mapping more than 512 MiB of bitmap clusters', async () => {
  const img = backingBitmapsImage()
  poke(img.bytes, img.layout.bitmapDirectoryOffset + 8, 4, 0x0800_0000) // 2^27 entries: a 1 GiB table
  const started = process.cpuUsage()
  await checkQcow2(new MemoryStorage(img.bytes, FILE))
  const cpu = process.cpuUsage(started)
  assert.ok((cpu.user + cpu.system) / 1000 < 1000, 'bounded work')
})

test('a write that a corrupt L2 entry sends far past the end of a memory storage fails with IO', async () => {
  const img = plainImage()
  poke(img.bytes, l2EntryOffset(img, 0), 8, (1n << 63n) | (1n << 40n))
  const device = await openChain(new MemoryStorage(img.bytes, FILE), { format: 'qcow2', writable: true })
  try {
    await rejectsWith(device.write(0, new Uint8Array(512)), 'IO', /^bad\.qcow2: cannot grow to \d+ bytes in memory$/)
  } finally {
    await device.close().catch(() => undefined)
  }
})

// QEMU refuses data writes that would land on metadata (qcow2_pre_write_overlap_check) and marks
// the image corrupt; so does qimg's writer.
test('a guest write through an L2 entry pointing at the L1 table is refused', async () => {
  const img = plainImage()
  poke(img.bytes, l2EntryOffset(img, 0), 8, (1n << 63n) | BigInt(img.layout.l1TableOffset))
  const l1Before = img.bytes.slice(img.layout.l1TableOffset, img.layout.l1TableOffset + 16)
  const storage = new MemoryStorage(img.bytes, FILE)
  const device = await openChain(storage, { format: 'qcow2', writable: true })
  try {
    await rejectsWith(device.write(0, new Uint8Array(512).fill(0xee)), 'CORRUPT', /overlaps with active L1 table/)
  } finally {
    await device.close().catch(() => undefined)
  }
  assert.deepEqual(storage.bytes().slice(img.layout.l1TableOffset, img.layout.l1TableOffset + 16), l1Before)
  const incompatible = new DataView(storage.bytes().buffer, storage.bytes().byteOffset).getBigUint64(72)
  assert.equal(incompatible & 2n, 2n, 'the corrupt bit is set')
})

