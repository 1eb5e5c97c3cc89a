// The qcow2 stream writer through its stores: compressed streams kept in memory, spilled, and
// compressed again past both budgets; every cluster size; read back by qimg and judged by
// qemu-img check and compare.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { MemoryStorage } from '../../src/io/memory.js'
import { MemorySink } from '../../src/io/sink.js'
import { openImage } from '../../src/node/open.js'
import { deflateCluster } from '../../src/node/codecs.js'
import { streamQcow2 } from '../../src/stream/qcow2-stream.js'
import { needTools, run } from '../helpers/oracle.js'
import { prng } from '../helpers/prng.js'

const dir = mkdtempSync(join(tmpdir(), 'qimg-qstream-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** 8 MiB of guest bytes: text-like runs, random runs and zeros, so clusters compress unevenly. */
function guest(seed: number): Uint8Array {
  const bytes = new Uint8Array(8 * 1024 * 1024)
  const random = prng(seed)
  for (let at = 0; at < bytes.length; at += 65536) {
    const kind = Math.floor(random() * 4)
    const piece = bytes.subarray(at, at + 65536)
    if (kind === 1) for (let i = 0; i < piece.length; i++) piece[i] = 97 + (i % 13) + (random() < 0.05 ? 1 : 0)
    if (kind === 2) for (let i = 0; i < piece.length; i++) piece[i] = Math.floor(random() * 256)
    if (kind === 3) piece.fill(7, 0, 3000)
  }
  return bytes
}

const CASES = [
  { name: 'all kept in memory', keepBytes: 1 << 30, spillBytes: 0, clusterBits: 16 },
  { name: 'memory, then spill, then compressed again', keepBytes: 20_000, spillBytes: 30_000, clusterBits: 16 },
  { name: 'nothing kept (all compressed twice)', keepBytes: 0, spillBytes: 0, clusterBits: 12 },
  { name: '512-byte clusters, spill only', keepBytes: 0, spillBytes: 1 << 30, clusterBits: 9 },
]

for (const c of CASES) {
  test(`qcow2 stream, compressed: ${c.name}`, { timeout: 600_000 }, async (t) => {
    const bytes = guest(c.clusterBits + c.keepBytes)
    const rawPath = join(dir, `${c.clusterBits}-${c.keepBytes}.raw`)
    writeFileSync(rawPath, bytes)
    const source = await openImage(rawPath, { format: 'raw' })
    const sink = new MemorySink()
    const spill = new MemoryStorage()
    await streamQcow2(source, sink, {
      clusterBits: c.clusterBits, compressor: deflateCluster, keepBytes: c.keepBytes,
      spill: c.spillBytes > 0 ? { storage: spill, spillBytes: c.spillBytes } : undefined, parallel: 3,
    })
    await source.close()
    if (c.spillBytes > 0 && c.keepBytes < 1 << 20) assert.ok(await spill.size() > 0, 'the spill store was used')
    const image = sink.bytes()
    const device = await openImage(new MemoryStorage(image), { format: 'qcow2' })
    assert.deepEqual(await device.read(0, bytes.length), bytes)
    await device.close()
    if (!needTools(t, 'qemu-img')) return
    const out = join(dir, 'out.qcow2')
    writeFileSync(out, image)
    const check = await run('qemu-img', ['check', out])
    assert.equal(check.code, 0, check.stdout + check.stderr)
    const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', rawPath, out])
    assert.equal(compare.code, 0, compare.stdout + compare.stderr)
  })
}
