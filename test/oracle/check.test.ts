// Oracle: `qimg check` on images damaged on purpose says what `qemu-img check` says — stdout
// (human and JSON), the per-cluster diagnostics on stderr, the exit code — and `qimg check -r
// leaks|all` repairs a copy into the state qemu-img's own repair gives another copy: both tools
// then agree on the repaired image, and the guest data reads the same.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { run as runCli } from '../../src/cli/main.js'
import { needTools, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { KiB, MiB, create, qemuImg, qemuIo, qemuIoAbort, writePatternedRaw } from './images.js'

const root = tempDir('qimg-oracle-check-')
after(() => root.cleanup())

// ---------------------------------------------------------------------------------------------
// Poking at an image: offsets come from the header (qcow2.rst), nothing from the library.

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r')
  try {
    const bytes = Buffer.alloc(length)
    readSync(fd, bytes, 0, length, offset)
    return bytes
  } finally {
    closeSync(fd)
  }
}

function writeAt(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+')
  try {
    writeSync(fd, bytes, 0, bytes.length, offset)
  } finally {
    closeSync(fd)
  }
}

const u64 = (path: string, offset: number): bigint => readAt(path, offset, 8).readBigUInt64BE(0)

function setU64(path: string, offset: number, value: bigint): void {
  const bytes = Buffer.alloc(8)
  bytes.writeBigUInt64BE(BigInt.asUintN(64, value))
  writeAt(path, offset, bytes)
}

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n
const COPIED = 1n << 63n

interface Header { clusterSize: number; l1Offset: number; reftableOffset: number; refcountOrder: number; extendedL2: boolean }

function header(path: string): Header {
  const h = readAt(path, 0, 104)
  const version = h.readUInt32BE(4)
  return {
    clusterSize: 2 ** h.readUInt32BE(20),
    l1Offset: Number(h.readBigUInt64BE(40)),
    reftableOffset: Number(h.readBigUInt64BE(48)),
    refcountOrder: version >= 3 ? h.readUInt32BE(96) : 4,
    extendedL2: version >= 3 && (h.readBigUInt64BE(72) & 16n) !== 0n,
  }
}

/** File offset of the active L1 entry for guest `offset`. */
function l1EntryAt(path: string, offset: number): number {
  const h = header(path)
  const entrySize = h.extendedL2 ? 16 : 8
  return h.l1Offset + Math.floor(offset / (h.clusterSize * (h.clusterSize / entrySize))) * 8
}

/** File offset of the active L2 entry for guest `offset`. */
function l2EntryAt(path: string, offset: number): number {
  const h = header(path)
  const entrySize = h.extendedL2 ? 16 : 8
  const perTable = h.clusterSize / entrySize
  const l2 = Number(u64(path, l1EntryAt(path, offset)) & OFFSET_MASK)
  assert.ok(l2 !== 0, `no L2 table for guest offset ${offset}`)
  return l2 + (Math.floor(offset / h.clusterSize) % perTable) * entrySize
}

/** Host cluster index of a normal data cluster at guest `offset`. */
function dataCluster(path: string, offset: number): number {
  const entry = u64(path, l2EntryAt(path, offset))
  assert.ok((entry & (1n << 62n)) === 0n && (entry & OFFSET_MASK) !== 0n, `guest offset ${offset} is not a normal cluster`)
  return Number(entry & OFFSET_MASK) / header(path).clusterSize
}

/** Host cluster index of the first host cluster of a compressed cluster at guest `offset`. */
function compressedCluster(path: string, offset: number): number {
  const h = header(path)
  const entry = u64(path, l2EntryAt(path, offset))
  assert.ok((entry & (1n << 62n)) !== 0n, `guest offset ${offset} is not compressed`)
  const offsetBits = 70n - BigInt(Math.log2(h.clusterSize))
  return Math.floor(Number(entry & ((1n << offsetBits) - 1n)) / h.clusterSize)
}

/** Guest offsets of the first `count` compressed clusters. */
function compressedOffsets(path: string, count: number): number[] {
  const h = header(path)
  const found: number[] = []
  for (let offset = 0; found.length < count; offset += h.clusterSize) {
    if (u64(path, l1EntryAt(path, offset)) & OFFSET_MASK && u64(path, l2EntryAt(path, offset)) & (1n << 62n)) found.push(offset)
  }
  return found
}

/** Where the refcount of `cluster` lives: block offset, entry index, entry width. */
function refcountSlot(path: string, cluster: number): { block: number; index: number; bits: number } {
  const h = header(path)
  const bits = 2 ** h.refcountOrder
  const perBlock = (h.clusterSize * 8) / bits
  const block = Number(u64(path, h.reftableOffset + Math.floor(cluster / perBlock) * 8))
  assert.ok(block !== 0, `no refcount block for cluster ${cluster}`)
  return { block, index: cluster % perBlock, bits }
}

function getRefcount(path: string, cluster: number): bigint {
  const { block, index, bits } = refcountSlot(path, cluster)
  if (bits >= 8) {
    const bytes = readAt(path, block + (index * bits) / 8, bits / 8)
    return BigInt('0x' + bytes.toString('hex'))
  }
  const byte = readAt(path, block + Math.floor((index * bits) / 8), 1)[0]!
  return BigInt((byte >> ((index * bits) % 8)) & ((1 << bits) - 1))
}

function setRefcount(path: string, cluster: number, value: bigint | number): void {
  const { block, index, bits } = refcountSlot(path, cluster)
  const v = BigInt(value)
  if (bits >= 8) {
    const bytes = Buffer.from(v.toString(16).padStart(bits / 4, '0'), 'hex')
    writeAt(path, block + (index * bits) / 8, bytes)
    return
  }
  const at = block + Math.floor((index * bits) / 8)
  const shift = (index * bits) % 8
  const mask = ((1 << bits) - 1) << shift
  const byte = readAt(path, at, 1)[0]!
  writeAt(path, at, Buffer.from([(byte & ~mask) | ((Number(v) << shift) & mask)]))
}

/** A cluster inside the file that nothing references (refcount 0), past the header. */
function freeClusterInFile(path: string): number {
  const h = header(path)
  const clusters = Math.floor(readFileSync(path).length / h.clusterSize)
  for (let c = clusters - 1; c > 0; c--) if (getRefcount(path, c) === 0n) return c
  throw new Error(`${path}: no free cluster inside the file`)
}

// ---------------------------------------------------------------------------------------------
// The cases: an image qemu made, then damage.

interface DamageCase {
  name: string
  /** Builds `img.qcow2` in `dir` with the real tools. */
  build(dir: string): Promise<void>
  /** Damages `path` in place. */
  damage(path: string): void
}

/** 4 MiB, 64 KiB clusters: data in three L2 ranges, one cluster freed by a discard. */
async function plainImage(dir: string, options: Record<string, string | number> = {}, cs = 64 * KiB): Promise<void> {
  await create(dir, 'img.qcow2', 4 * MiB, { cluster_size: cs, ...options })
  await qemuIo('img.qcow2', [
    `write -P 0x11 0 ${4 * cs}`, `write -P 0x22 1M ${cs}`, `write -P 0x33 3M ${2 * cs}`, `discard ${2 * cs} ${cs}`,
  ], { cwd: dir })
}

/** An image with two snapshots: clusters shared (refcount 2 and 3) and private ones. */
async function snapshotImage(dir: string, compat = '1.1'): Promise<void> {
  await create(dir, 'img.qcow2', 4 * MiB, { compat, cluster_size: 64 * KiB })
  await qemuIo('img.qcow2', ['write -P 0x11 0 256k', 'write -P 0x22 1M 64k'], { cwd: dir })
  await qemuImg(['snapshot', '-c', 'one', 'img.qcow2'], dir)
  await qemuIo('img.qcow2', ['write -P 0x33 64k 64k', 'write -P 0x44 2M 64k'], { cwd: dir })
  await qemuImg(['snapshot', '-c', 'two', 'img.qcow2'], dir)
  await qemuIo('img.qcow2', ['write -P 0x55 128k 64k'], { cwd: dir })
}

/** Compressed clusters (convert -c) next to normal ones. */
async function compressedImage(dir: string): Promise<void> {
  writePatternedRaw(join(dir, 'src.raw'), 1 * MiB, 7)
  await qemuImg(['convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', 'src.raw', 'img.qcow2'], dir)
  await qemuImg(['resize', '-q', 'img.qcow2', '2M'], dir)
  await qemuIo('img.qcow2', ['write -P 0x66 1M 64k'], { cwd: dir })
}

const plain = (name: string, damage: (path: string) => void, options: Record<string, string | number> = {}, cs?: number): DamageCase =>
  ({ name, build: (dir) => plainImage(dir, options, cs), damage })

const CASES: DamageCase[] = [
  plain('undamaged', () => undefined),
  plain('leaked clusters: a data cluster refcount 2, a free cluster refcount 1', (p) => {
    setRefcount(p, dataCluster(p, 64 * KiB), 2)
    setRefcount(p, freeClusterInFile(p), 1)
  }),
  plain('refcount too high: 5 on a data cluster', (p) => setRefcount(p, dataCluster(p, 1 * MiB), 5)),
  plain('refcount too low: 0 on a data cluster (refcount structure rebuilt)', (p) => setRefcount(p, dataCluster(p, 3 * MiB), 0)),
  plain('refcount too low: 0 on an L2 table', (p) => setRefcount(p, Number(u64(p, l1EntryAt(p, 1 * MiB)) & OFFSET_MASK) / (64 * KiB), 0)),
  plain('refcount too low: 0 on the refcount table', (p) => setRefcount(p, header(p).reftableOffset / (64 * KiB), 0)),
  plain('COPIED flag missing in an L1 entry', (p) => setU64(p, l1EntryAt(p, 0), u64(p, l1EntryAt(p, 0)) & ~COPIED)),
  plain('COPIED flag missing in an L2 entry', (p) => setU64(p, l2EntryAt(p, 64 * KiB), u64(p, l2EntryAt(p, 64 * KiB)) & ~COPIED)),
  plain('L2 table overlapping a refcount block', (p) => {
    const refblock = u64(p, header(p).reftableOffset)
    setU64(p, l1EntryAt(p, 0), COPIED | refblock)
  }),
  plain('a cluster referenced twice (two L2 entries, one cluster)', (p) => setU64(p, l2EntryAt(p, 64 * KiB), u64(p, l2EntryAt(p, 0)))),
  plain('an L2 entry pointing past the end of the file', (p) => setU64(p, l2EntryAt(p, 64 * KiB), COPIED | BigInt(100 * 64 * KiB))),
  plain('reserved bits in an L2 entry', (p) => setU64(p, l2EntryAt(p, 64 * KiB), u64(p, l2EntryAt(p, 64 * KiB)) | 0x2n)),
  plain('reserved bits in an L1 entry', (p) => setU64(p, l1EntryAt(p, 0), u64(p, l1EntryAt(p, 0)) | (1n << 56n))),
  plain('an unaligned data offset in an L2 entry', (p) => setU64(p, l2EntryAt(p, 64 * KiB), u64(p, l2EntryAt(p, 64 * KiB)) + 0x200n)),
  plain('leaks and a cluster referenced twice together', (p) => {
    setRefcount(p, freeClusterInFile(p), 1)
    setU64(p, l2EntryAt(p, 3 * MiB), u64(p, l2EntryAt(p, 1 * MiB)))
  }),
  plain('compat=0.10: leak and COPIED missing', (p) => {
    setRefcount(p, dataCluster(p, 0), 2)
    setU64(p, l2EntryAt(p, 3 * MiB), u64(p, l2EntryAt(p, 3 * MiB)) & ~COPIED)
  }, { compat: '0.10' }),
  plain('512-byte clusters: leak, a cluster referenced twice', (p) => {
    setRefcount(p, freeClusterInFile(p), 1)
    setU64(p, l2EntryAt(p, 512), u64(p, l2EntryAt(p, 0)))
  }, {}, 512),
  plain('refcount_bits=1: leaked free cluster', (p) => setRefcount(p, freeClusterInFile(p), 1), { refcount_bits: 1 }),
  plain('refcount_bits=1: refcount 0 on a data cluster', (p) => setRefcount(p, dataCluster(p, 1 * MiB), 0), { refcount_bits: 1 }),
  plain('refcount_bits=1: COPIED missing', (p) => setU64(p, l2EntryAt(p, 0), u64(p, l2EntryAt(p, 0)) & ~COPIED), { refcount_bits: 1 }),
  plain('refcount_bits=64: refcount 2^40 on a data cluster', (p) => setRefcount(p, dataCluster(p, 0), 1n << 40n), { refcount_bits: 64 }),
  plain('refcount_bits=64: refcount 0 on a data cluster and a leak', (p) => {
    setRefcount(p, dataCluster(p, 1 * MiB), 0)
    setRefcount(p, freeClusterInFile(p), 3)
  }, { refcount_bits: 64 }),
  plain('extended_l2=on: leak, COPIED missing', (p) => {
    setRefcount(p, dataCluster(p, 0), 2)
    setU64(p, l2EntryAt(p, 3 * MiB), u64(p, l2EntryAt(p, 3 * MiB)) & ~COPIED)
  }, { extended_l2: 'on' }),
  {
    name: 'extended_l2=on: subcluster both allocated and zero; allocation bits on an unallocated cluster (2/64 = 3.125% allocated)',
    async build(dir) {
      await create(dir, 'img.qcow2', 4 * MiB, { extended_l2: 'on' })
      await qemuIo('img.qcow2', ['write -P 1 0 64k', 'write -P 2 128k 4k'], { cwd: dir })
    },
    damage(p) {
      setU64(p, l2EntryAt(p, 0) + 8, 0x1_ffff_ffffn)
      setU64(p, l2EntryAt(p, 64 * KiB) + 8, 0x1n)
    },
  },
  {
    name: 'lazy_refcounts=on left dirty by an aborted qemu-io',
    async build(dir) {
      await create(dir, 'img.qcow2', 4 * MiB, { lazy_refcounts: 'on' })
      await qemuIo('img.qcow2', ['write -P 6 1M 64k'], { cwd: dir })
      await qemuIoAbort('img.qcow2', ['write -P 7 0 128k', 'flush', 'write -P 8 2M 4k', 'write -P 9 3M 64k'], dir)
    },
    damage: () => undefined,
  },
  {
    name: 'lazy_refcounts=on dirty, over internal snapshots',
    async build(dir) {
      await create(dir, 'img.qcow2', 4 * MiB, { lazy_refcounts: 'on' })
      await qemuIo('img.qcow2', ['write -P 6 0 256k'], { cwd: dir })
      await qemuImg(['snapshot', '-c', 'before', 'img.qcow2'], dir)
      await qemuIoAbort('img.qcow2', ['write -P 7 64k 64k', 'write -P 8 2M 4k', 'flush'], dir)
    },
    damage: () => undefined,
  },
  {
    name: 'compressed clusters: leak on a compressed host cluster, COPIED set on a compressed entry',
    build: compressedImage,
    damage(p) {
      const [first, second] = compressedOffsets(p, 2) as [number, number]
      const c = compressedCluster(p, first)
      setRefcount(p, c, getRefcount(p, c) + 1n)
      setU64(p, l2EntryAt(p, second), u64(p, l2EntryAt(p, second)) | COPIED)
    },
  },
  {
    name: 'compressed clusters: refcount 0 on a compressed host cluster',
    build: compressedImage,
    damage: (p) => setRefcount(p, compressedCluster(p, compressedOffsets(p, 3)[2]!), 0),
  },
  {
    name: 'snapshots: a shared cluster with refcount 1 (too low)',
    build: snapshotImage,
    damage: (p) => setRefcount(p, dataCluster(p, 192 * KiB), 1),
  },
  {
    name: 'snapshots: COPIED set on a shared cluster, missing on an own one',
    build: snapshotImage,
    damage(p) {
      setU64(p, l2EntryAt(p, 0), u64(p, l2EntryAt(p, 0)) | COPIED)
      setU64(p, l2EntryAt(p, 128 * KiB), u64(p, l2EntryAt(p, 128 * KiB)) & ~COPIED)
    },
  },
  {
    name: 'snapshots: leak on a shared cluster and a free one',
    build: snapshotImage,
    damage(p) {
      setRefcount(p, dataCluster(p, 1 * MiB), getRefcount(p, dataCluster(p, 1 * MiB)) + 1n)
      setRefcount(p, dataCluster(p, 2 * MiB) + 3, 1)
    },
  },
  {
    name: 'snapshots, compat=0.10: refcount 0 on a shared cluster',
    build: (dir) => snapshotImage(dir, '0.10'),
    damage: (p) => setRefcount(p, dataCluster(p, 0), 0),
  },
]

// ---------------------------------------------------------------------------------------------
// Running both tools

/** qimg's CLI in this process; the absolute path is printed as `img.qcow2` like qemu-img's run. */
async function qimgCheck(path: string, args: readonly string[]): Promise<RunResult> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(['check', ...args, path], { out: (t) => { stdout += t }, err: (t) => { stderr += t } })
  return normalize({ stdout, stderr, code }, path, 'qimg')
}

async function qemuCheck(path: string, args: readonly string[]): Promise<RunResult> {
  return normalize(await run('qemu-img', ['check', ...args, path]), path, 'qemu-img')
}

/** Names the image `img.qcow2` and drops the program prefix of error lines. */
function normalize(r: RunResult, path: string, program: string): RunResult {
  const fix = (text: string) => text.replaceAll(path, 'img.qcow2').replaceAll(`${program}: `, '')
  return { stdout: fix(r.stdout), stderr: fix(r.stderr), code: r.code }
}

function assertSameRun(ours: RunResult, theirs: RunResult, what: string): void {
  assert.equal(ours.stdout, theirs.stdout, `${what}: stdout`)
  assert.equal(ours.stderr, theirs.stderr, `${what}: stderr`)
  assert.equal(ours.code, theirs.code, `${what}: exit code`)
}

/** The guest disk as qemu-img reads it (`convert -O raw`), or its error. */
async function qemuContent(path: string, out: string): Promise<Buffer | string> {
  const r = await run('qemu-img', ['convert', '-O', 'raw', path, out])
  return r.code === 0 ? readFileSync(out) : `convert failed: ${r.stderr.replaceAll(path, 'img.qcow2')}`
}

describe('check on damaged images equals qemu-img check', { concurrency: 2 }, () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dir = mkdtempSync(join(root.path, 'case-'))
      await c.build(dir)
      const image = join(dir, 'img.qcow2')
      c.damage(image)

      // Read-only checks run on the image itself.
      for (const output of [[], ['--output=json']]) {
        assertSameRun(await qimgCheck(image, output), await qemuCheck(image, output), `check ${output.join(' ')}`)
      }

      for (const mode of ['leaks', 'all']) {
        // Human output of a repair once (-r all); JSON for both modes, with the repaired copies compared.
        for (const output of mode === 'all' ? [[], ['--output=json']] : [['--output=json']]) {
          const what = `check -r ${mode} ${output.join(' ')}`
          const theirsDir = join(dir, `qemu-${mode}${output.length}`)
          const oursDir = join(dir, `qimg-${mode}${output.length}`)
          mkdirSync(theirsDir)
          mkdirSync(oursDir)
          const theirs = join(theirsDir, 'img.qcow2')
          const ours = join(oursDir, 'img.qcow2')
          copyFileSync(image, theirs)
          copyFileSync(image, ours)
          assertSameRun(await qimgCheck(ours, ['-r', mode, ...output]), await qemuCheck(theirs, ['-r', mode, ...output]), what)
          if (output.length === 0) continue
          // Repaired copies: qemu-img sees qimg's exactly as it sees its own, and so does qimg.
          const afterTheirs = await qemuCheck(theirs, ['--output=json'])
          assertSameRun(await qemuCheck(ours, ['--output=json']), afterTheirs, `${what}, then qemu-img check`)
          assertSameRun(await qimgCheck(ours, ['--output=json']), afterTheirs, `${what}, then qimg check`)
          const [a, b] = await Promise.all([qemuContent(ours, join(oursDir, 'raw')), qemuContent(theirs, join(theirsDir, 'raw'))])
          assert.ok(typeof a === typeof b && (typeof a === 'string' ? a === b : Buffer.compare(a, b as Buffer) === 0), `${what}: guest data after repair differs from qemu-img's repaired copy`)
        }
      }
    })
  }
})
