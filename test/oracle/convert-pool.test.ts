// Oracle: compressed sources (zlib, zstd, made by qemu-img) decompressed on the worker pool.
// `qimg convert -O raw` gives qemu-img's bytes, a corrupt cluster fails with the message the
// library gives inline, `qimg compare` agrees, and the qimg process exits on its own with no
// pool thread left behind.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { isImageError } from '../../src/errors.js'
import { openImage } from '../../src/node/open.js'
import { CodecPool } from '../../src/node/pool.js'
import { hasTool, needTools, qimg, qimgInProcess, tempDir } from '../helpers/oracle.js'
import { firstDifference, qemuImg, writePatternedRaw } from './images.js'

const MiB = 1024 * 1024
const dir = tempDir('qimg-oracle-convert-pool-')
after(() => dir.cleanup())
const TYPES = ['zlib', 'zstd'] as const
const CLUSTERS = [4096, 65536] as const
const image = (type: string, cs: number): string => dir.file(`${type}-${cs}.qcow2`)

before(async () => {
  if (!hasTool('qemu-img')) return
  writePatternedRaw(dir.file('src.raw'), 6 * MiB + 12345, 7)
  for (const type of TYPES) {
    for (const cs of CLUSTERS) {
      await qemuImg(['convert', '-c', '-O', 'qcow2', '-o', `compression_type=${type},cluster_size=${cs}`, dir.file('src.raw'), image(type, cs)])
    }
  }
})

/** Host offset of the first compressed stream at or after guest `from` (spec: "Compressed Clusters Descriptor"). */
function compressedStreamAt(bytes: Uint8Array, from: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const clusterBits = view.getUint32(20)
  const cs = 2 ** clusterBits
  const l1Offset = Number(view.getBigUint64(40))
  const perTable = cs / 8
  for (let cluster = from / cs; ; cluster++) {
    const l2Offset = Number(view.getBigUint64(l1Offset + 8 * Math.floor(cluster / perTable)) & 0x00ff_ffff_ffff_fe00n)
    const entry = l2Offset === 0 ? 0n : view.getBigUint64(l2Offset + 8 * (cluster % perTable))
    if (entry & (1n << 62n)) return Number(entry & ((1n << BigInt(62 - (clusterBits - 8))) - 1n))
  }
}

describe('convert and compare of compressed images (clusters from 16 KiB decompressed on the worker pool)', () => {
  for (const type of TYPES) {
    for (const cs of CLUSTERS) {
      it(`${type}, ${cs / 1024} KiB clusters: the bytes of qemu-img convert -O raw, no pool thread left`, async (t) => {
        if (!needTools(t, 'qemu-img')) return
        const ours = dir.file(`${type}-${cs}.qimg.raw`)
        const theirs = dir.file(`${type}-${cs}.qemu.raw`)
        await qemuImg(['convert', '-O', 'raw', image(type, cs), theirs])
        const r = await qimgInProcess(['convert', '-O', 'raw', image(type, cs), ours])
        assert.equal(r.code, 0, r.stderr)
        assert.equal(CodecPool.liveThreads, 0, 'convert closed its pool')
        assert.equal(firstDifference(readFileSync(ours), readFileSync(theirs)), -1)
        const c = await qimgInProcess(['compare', image(type, cs), theirs])
        assert.deepEqual([c.code, c.stdout], [0, 'Images are identical.\n'])
        assert.equal(CodecPool.liveThreads, 0, 'compare closed its pool')
      })
    }
  }

  it('a qcow2 → qcow2 convert -c of a compressed source keeps the guest bytes', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const out = dir.file('recompressed.qcow2')
    const r = await qimgInProcess(['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', image('zlib', 65536), out])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(CodecPool.liveThreads, 0)
    assert.equal((await qemuImg(['compare', out, dir.file('src.raw')])).trim(), 'Images are identical.')
  })

  it('the qimg process exits by itself after converting a compressed image', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const started = Date.now()
    const r = await qimg(['convert', '-O', 'raw', image('zstd', 65536), dir.file('exit.raw')])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(Date.now() - started < 30_000, 'exits promptly')
    // The disk is the source rounded up to whole sectors.
    const expected = Buffer.alloc(Math.ceil((6 * MiB + 12345) / 512) * 512)
    readFileSync(dir.file('src.raw')).copy(expected)
    assert.equal(firstDifference(readFileSync(dir.file('exit.raw')), expected), -1)
  })

  for (const type of TYPES) {
    it(`${type}: a corrupt cluster fails convert with the error inline reading gives`, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const bad = dir.file(`bad-${type}.qcow2`)
      const bytes = readFileSync(image(type, 65536))
      // 0xff bytes at the start of one stream: a reserved deflate block type, no zstd frame magic.
      const host = compressedStreamAt(bytes, 3 * MiB)
      bytes.fill(0xff, host, host + 16)
      writeFileSync(bad, bytes)
      const inline = await openImage(bad)
      const error = await inline.read(0, inline.size).then(() => undefined, (e: unknown) => e)
      await inline.close()
      assert.ok(isImageError(error, 'CORRUPT'), String(error))
      const r = await qimgInProcess(['convert', '-O', 'raw', bad, dir.file(`bad-${type}.raw`)])
      assert.equal(r.code, 1)
      assert.equal(r.stderr, `qimg: ${error.message}\n`)
      assert.equal(CodecPool.liveThreads, 0)
    })
  }
})
