// Oracle: a run of streamOptimized grains (qemu-img made the file) is one compressed extent,
// fetched with one host read per run of at most 4 MiB and inflated concurrently; the guest bytes
// equal qemu-img's convert -O raw, whole and in unaligned pieces.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs } from '../../src/node/codecs.js'
import { needTools, runOk, tempDir } from '../helpers/oracle.js'
import { writePatternedRaw } from './images.js'

/** Storage that counts reads. */
class CountingStorage extends MemoryStorage {
  reads = 0
  override read(offset: number, length: number): Promise<Uint8Array> {
    this.reads++
    return super.read(offset, length)
  }
}

/** A streamOptimized VMDK qemu-img made from patterned data (zero stretches break the runs), and qemu-img's raw of it. */
async function streamImage(dir: { file(name: string): string }, size: number, seed: number): Promise<{ vmdk: Uint8Array; raw: Uint8Array }> {
  writePatternedRaw(dir.file('src.raw'), size, seed)
  await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', dir.file('src.raw'), dir.file('s.vmdk')])
  await runOk('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', dir.file('s.vmdk'), dir.file('back.raw')])
  return { vmdk: readFileSync(dir.file('s.vmdk')), raw: readFileSync(dir.file('back.raw')) }
}

test('streamOptimized: one host read per run of compressed grains, bytes equal to qemu-img', async (t) => {
  if (!needTools(t, 'qemu-img')) return
  const dir = tempDir('qimg-vmdk-run-')
  try {
    const { vmdk, raw } = await streamImage(dir, 6 * 1024 * 1024 + 3 * 65536 + 4096, 7)
    assert.ok(vmdk.length < 4 * 1024 * 1024, 'the whole stream fits one read')
    const storage = new CountingStorage(vmdk, 's.vmdk')
    const device = await openChain(storage, { codecs: nodeCodecs })
    let runs = 0
    let grains = 0
    for (let at = 0; at < device.size;) {
      const e = await device.driver.getExtent(at, device.size - at)
      if (e.kind === 'compressed') {
        runs++
        grains += Math.ceil(e.length / 65536)
      }
      at += e.length
    }
    assert.ok(grains > runs, `${grains} grains in ${runs} runs: runs of several grains`)
    const before = storage.reads
    const bytes = await device.read(0, device.size)
    assert.equal(storage.reads - before, runs, 'host reads of the whole image')
    assert.ok(Buffer.from(bytes).equals(Buffer.from(raw)), 'the guest bytes are qemu-img\'s')
    // Unaligned pieces across grain and run ends.
    for (const [offset, length] of [[1, 65536], [65536 * 3 - 100, 300_000], [device.size - 70_000, 70_000], [12345, 2 * 1024 * 1024]] as const) {
      const piece = await device.read(offset, length)
      assert.ok(Buffer.from(piece).equals(Buffer.from(raw.subarray(offset, offset + length))), `read of ${length} at ${offset}`)
    }
    await device.close()
  } finally {
    dir.cleanup()
  }
})

test('streamOptimized: a run beyond 4 MiB on the host is read in pieces of at most 4 MiB', async (t) => {
  if (!needTools(t, 'qemu-img')) return
  const dir = tempDir('qimg-vmdk-run-')
  try {
    // Random bytes do not compress: 12 MiB of grains take about 12 MiB of the file.
    const data = new Uint8Array(12 * 1024 * 1024)
    for (let i = 0; i < data.length; i += 65536) globalThis.crypto.getRandomValues(data.subarray(i, i + 65536))
    writeFileSync(dir.file('src.raw'), data)
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', dir.file('src.raw'), dir.file('s.vmdk')])
    const storage = new CountingStorage(readFileSync(dir.file('s.vmdk')), 's.vmdk')
    const device = await openChain(storage, { codecs: nodeCodecs })
    assert.deepEqual(await device.driver.getExtent(0, device.size), { kind: 'compressed', length: device.size })
    const sizes: number[] = []
    const read = storage.read.bind(storage)
    storage.read = (offset, length) => { sizes.push(length); return read(offset, length) }
    const bytes = await device.read(0, device.size)
    assert.ok(Buffer.from(bytes).equals(Buffer.from(data)))
    assert.ok(sizes.every((n) => n <= 4 * 1024 * 1024), `reads of ${sizes.join(', ')} bytes`)
    // MAX_IO of 8 MiB per extent: two extents, each in ≤ 4 MiB reads (a few more than 3).
    assert.ok(sizes.length >= 3 && sizes.length <= 6, `${sizes.length} host reads`)
    await device.close()
  } finally {
    dir.cleanup()
  }
})
