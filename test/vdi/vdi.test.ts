// VDI in memory: create, probe, reads and writes through the block map, the open-time rules
// (one hostile image per rule, with its code and QEMU's text) and check's verdicts.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { probeFormat } from '../../src/format/probe.js'
import { FIELD, VDI_BLOCK_SIZE, decodeHeader } from '../../src/vdi/header.js'
import { checkVdi } from '../../src/vdi/check.js'
import { vdiModule } from '../../src/vdi/module.js'
import { newVdi, openVdi, pokeLE } from './vdi-helpers.js'

const MiB = VDI_BLOCK_SIZE

describe('vdi create and probe', () => {
  it('lays the header out as QEMU does', async () => {
    const bytes = (await newVdi(5.5 * MiB)).bytes()
    assert.equal(bytes.length, 1024) // header and one sector of block map
    const h = decodeHeader(bytes)
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 35)), '<<< QEMU VM Virtual Disk Image >>>\n')
    assert.deepEqual([h.version, h.headerSize, h.imageType, h.offsetBmap, h.offsetData, h.sectorSize, h.diskSize, h.blockSize, h.blocksInImage, h.blocksAllocated],
      [0x10001, 0x180, 1, 0x200, 0x400, 512, 5.5 * MiB, MiB, 6, 0])
    assert.equal(h.uuidImage[7]! >> 4, 4) // a version 4 UUID (stored with its fields swapped)
    assert.equal(await probeFormat(new MemoryStorage(bytes)), 'vdi')
  })
  it('a static image allocates every block, in order', async () => {
    const bytes = (await newVdi(3 * MiB + 1, { static: true })).bytes()
    const h = decodeHeader(bytes)
    assert.equal(h.diskSize, 3 * MiB + 512) // rounded up to a sector
    assert.equal(h.blocksAllocated, 4)
    assert.equal(bytes.length, 0x400 + 4 * MiB)
    const device = await openVdi(bytes)
    const st = await device.blockStatus(2 * MiB, MiB)
    assert.equal(st.data, true)
    assert.equal(st.offset, 0x400 + 2 * MiB)
  })
  it('a size above the maximum is refused with QEMU\'s text', async () => {
    await assert.rejects(newVdi(0x1fffff80 * MiB + 512), (e) => isImageError(e, 'INVALID_ARGUMENT') && e.message === 'Unsupported VDI image size (size is 0x1fffff8000200, max supported is 0x1fffff8000000)')
  })
})

describe('vdi reads and writes', () => {
  it('writes allocate blocks in order; reads see them; discard does nothing', async () => {
    const storage = await newVdi(5.5 * MiB)
    const device = await openVdi(storage.bytes(), true)
    await device.write(3 * MiB + 100, new Uint8Array(10).fill(0xab))
    await device.write(MiB - 2, new Uint8Array(4).fill(0xcd)) // spans blocks 0 and 1
    await device.writeZeroes(5 * MiB, 4096) // allocates, as QEMU's fallback does
    await device.discard(3 * MiB, MiB)
    const back = await device.read(0, 5.5 * MiB)
    assert.deepEqual([...back.subarray(MiB - 3, MiB + 3)], [0, 0xcd, 0xcd, 0xcd, 0xcd, 0])
    assert.deepEqual([...back.subarray(3 * MiB + 99, 3 * MiB + 111)], [0, ...new Array(10).fill(0xab), 0])
    const h = decodeHeader(await device.driver.storage.read(0, 512))
    assert.equal(h.blocksAllocated, 4)
    const map = await device.driver.storage.read(0x200, 24)
    const entries = [...new Uint32Array(map.slice().buffer)]
    assert.deepEqual(entries, [1, 2, 0xffffffff, 0, 0xffffffff, 3])
    const status = await device.blockStatus(2 * MiB, MiB)
    assert.deepEqual([status.present, status.zero, status.data], [true, true, false])
    const report = await checkVdi(device.driver.storage, { report: () => {} })
    assert.equal(report.corruptions, 0)
    await device.close()
  })
  it('a read-only image refuses writes', async () => {
    const device = await openVdi((await newVdi(MiB)).bytes())
    await assert.rejects(device.write(0, new Uint8Array(1)), (e) => isImageError(e, 'READ_ONLY'))
  })
})

/** A valid 4 MiB image with blocks 0 and 2 allocated (host blocks 0 and 1). */
async function base(): Promise<Uint8Array> {
  const storage = await newVdi(4 * MiB)
  const device = await openVdi(storage.bytes(), true)
  await device.write(0, new Uint8Array(512).fill(1))
  await device.write(2 * MiB, new Uint8Array(512).fill(2))
  const bytes = await device.driver.storage.read(0, await device.driver.storage.size())
  await device.close()
  return bytes
}

const hostile: { name: string; patch: (b: Uint8Array) => void; code: string; qemuText?: string; message?: RegExp }[] = [
  { name: 'disk size above the maximum', patch: (b) => pokeLE(b, FIELD.diskSize, 8, 0x1fffff80 * MiB + 512), code: 'UNSUPPORTED', qemuText: 'Unsupported VDI image size (size is 0x1fffff8000200, max supported is 0x1fffff8000000)' },
  { name: 'bad signature', patch: (b) => pokeLE(b, FIELD.signature, 4, 0x12345678), code: 'NOT_AN_IMAGE', qemuText: 'Image not in VDI format (bad signature 12345678)' },
  { name: 'version', patch: (b) => pokeLE(b, FIELD.version, 4, 0x00010000), code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (version 1.0)' },
  { name: 'unaligned block map', patch: (b) => pokeLE(b, FIELD.offsetBmap, 4, 0x201), code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (unaligned block map offset 0x201)' },
  { name: 'unaligned data', patch: (b) => pokeLE(b, FIELD.offsetData, 4, 0x401), code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (unaligned data offset 0x401)' },
  { name: 'sector size', patch: (b) => pokeLE(b, FIELD.sectorSize, 4, 4096), code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (sector size 4096 is not 512)' },
  { name: 'block size', patch: (b) => pokeLE(b, FIELD.blockSize, 4, 2 * MiB), code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (block size 2097152 is not 1048576)' },
  { name: 'disk larger than the block map', patch: (b) => pokeLE(b, FIELD.diskSize, 8, 5 * MiB), code: 'CORRUPT', qemuText: 'unsupported VDI image (disk size 5242880, image bitmap has room for 4194304)' },
  { name: 'link UUID', patch: (b) => { b[FIELD.uuidLink + 3] = 1 }, code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (non-NULL link UUID)' },
  { name: 'parent UUID', patch: (b) => { b[FIELD.uuidParent] = 1 }, code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (non-NULL parent UUID)' },
  { name: 'too many blocks', patch: (b) => pokeLE(b, FIELD.blocksInImage, 4, 0x40000000), code: 'UNSUPPORTED', qemuText: 'unsupported VDI image (too many blocks 1073741824, max is 536870784)' },
  { name: 'block map entry too large', patch: (b) => pokeLE(b, 0x200 + 4, 4, 4), code: 'CORRUPT', message: /block map at 0x200: entry 1 \(at 0x204\) is 4, not below blocks_in_image 4/ },
  { name: 'two blocks share a host block', patch: (b) => pokeLE(b, 0x200 + 12, 4, 1), code: 'CORRUPT', message: /entry 3 \(at 0x20c\) names host block 1, which entry 2 uses too/ },
  { name: 'block map past the end of the file', patch: (b) => pokeLE(b, FIELD.offsetBmap, 4, 0x40000000), code: 'SHORT_READ' },
]

describe('vdi hostile images', () => {
  for (const c of hostile) {
    it(c.name, async () => {
      const bytes = await base()
      c.patch(bytes)
      await assert.rejects(openVdi(bytes), (e) => {
        assert.ok(isImageError(e), String(e))
        assert.equal(e.code, c.code, e.message)
        if (c.qemuText !== undefined) assert.equal(e.qemuText, `Could not open 'test.vdi': ${c.qemuText}`)
        if (c.message) assert.match(e.message, c.message)
        assert.ok(e.message.startsWith('test.vdi: '), e.message)
        return true
      })
    })
  }
  it('an odd disk size is rounded up to whole sectors', async () => {
    const bytes = await base()
    pokeLE(bytes, FIELD.diskSize, 8, 3 * MiB + 7)
    const device = await openVdi(bytes)
    assert.equal(device.size, 3 * MiB + 512)
  })
  it('a truncated file is not an image', async () => {
    await assert.rejects(openVdi((await base()).subarray(0, 300)), (e) => isImageError(e, 'NOT_AN_IMAGE'))
    assert.equal(await probeFormat(new MemoryStorage((await base()).subarray(0, 300))), 'raw')
  })
})

describe('vdi check', () => {
  const verdict = async (patch: (b: Uint8Array) => void) => {
    const bytes = await base()
    patch(bytes)
    const lines: string[] = []
    const r = await vdiModule.check!(new MemoryStorage(bytes, 'test.vdi'), { report: (l) => lines.push(l) })
    return { lines, corruptions: r.corruptions }
  }
  it('a clean image', async () => assert.deepEqual(await verdict(() => {}), { lines: [], corruptions: 0 }))
  it('an entry too large', async () => assert.deepEqual(await verdict((b) => pokeLE(b, 0x204, 4, 9)),
    { lines: ['ERROR: block index 1 too large, is 9'], corruptions: 1 }))
  it('a shared host block and a wrong count', async () => assert.deepEqual(await verdict((b) => pokeLE(b, 0x20c, 4, 1)),
    { lines: ['ERROR: block index 1 also used by 1', 'ERROR: allocated blocks mismatch, is 3, should be 2'], corruptions: 2 }))
  it('repair is refused as QEMU does', async () => {
    await assert.rejects(vdiModule.check!(new MemoryStorage(await base(), 'test.vdi'), { fix: 'all', report: () => {} }),
      (e) => isImageError(e, 'UNSUPPORTED') && e.qemuText === 'This image format does not support checks')
  })
})
