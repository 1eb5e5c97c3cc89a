// Differential, model-based tests of the QCOW2 write engine: seeded random sequences of writes,
// zero writes and discards (unaligned, cross-cluster, inside subclusters, across L2 tables, over a
// backing file, over compressed clusters) are applied to an image through BlockDevice and to a
// flat DiskModel. After every op the touched range reads like the model; after every sequence the
// whole disk does, `qemu-img check` finds no errors and no leaks, `qemu-img compare` finds the
// image identical to the model written out as raw, and a read-only re-open still agrees.
//
// Reproduce or explore:
//   QIMG_MODEL_ONLY=<scenario name substring> node --test dist/test/model/write.test.js
//   QIMG_MODEL_SEED=<n>    run every scenario with seed n instead of its own
//   QIMG_MODEL_SCALE=<x>   multiply the number of ops per sequence
//   QIMG_MODEL_KEEP=1      keep the images for inspection
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { BlockDevice } from '../../src/format/device.js'
import { FileStorage } from '../../src/io/file.js'
import type { Storage } from '../../src/io/storage.js'
import { createQcow2, createRaw } from '../../src/node/typed-create.js'
import { openImage } from '../../src/node/open.js'
import type { Qcow2CreateOptions } from '../../src/qcow2/create.js'
import { needTools, run, runOk } from '../helpers/oracle.js'
import { DiskModel, describeOp, firstDifference, scratchDir, type Op } from './model.js'
import { Prng } from './prng.js'

const KiB = 1024
const MiB = 1024 * KiB

const ONLY = process.env['QIMG_MODEL_ONLY']
const SEED = process.env['QIMG_MODEL_SEED'] === undefined ? undefined : Number(process.env['QIMG_MODEL_SEED']) >>> 0
const SCALE = Number(process.env['QIMG_MODEL_SCALE'] ?? 1)

type OpKind = 'write' | 'zero' | 'zeroUnmap' | 'discard' | 'flush'
const DEFAULT_WEIGHTS: Record<OpKind, number> = { write: 6, zero: 2, zeroUnmap: 1, discard: 2, flush: 0.5 }

/** One sequence: how the image is made and which ops run on it. */
interface Scenario {
  name: string
  /** Virtual size (a multiple of 512; not necessarily of the cluster size). */
  size: number
  ops: number
  seed: number
  /** createQcow2 options besides size and backing. */
  create?: Omit<Qcow2CreateOptions, 'size' | 'backingFile' | 'backingFormat'>
  /** A backing file made by qemu-img from patterned data (qcow2: `qemu-img convert`). */
  base?: { format: 'qcow2' | 'raw'; size: number }
  /** The image is made by `qemu-img convert -c` from compressible patterned data. */
  compressed?: { compat: '0.10' | '1.1'; clusterSize: number; extendedL2?: boolean; compressionType?: 'zlib' | 'zstd'; refcountBits?: number }
  /** A raw image (model: raw discard). */
  raw?: boolean
  /** Close, check with qemu-img and re-open every this many ops. */
  reopenEvery?: number
  /** Passed to openImage (bytes of L2 tables to cache). */
  l2CacheSize?: number
  weights?: Partial<Record<OpKind, number>>
  /** Upper bound of one op's length (default 256 KiB). */
  maxLength?: number
  /** Runs after the sequence with the closed image's path (extra assertions). */
  extra?: (path: string, tag: string) => Promise<void>
}

/** What a prepared image looks like to the op generator and the checks. */
interface Setup {
  path: string
  format: 'qcow2' | 'raw'
  model: DiskModel
  clusterSize: number
  subclusterSize: number
  /** Guest bytes one L2 table maps. */
  coverage: number
  v3: boolean
  /** Path of a raw external data file that must equal the disk. */
  rawDataFile: string | undefined
}

const root = scratchDir('qimg-model-write-')
after(() => {
  if (process.env['QIMG_MODEL_KEEP']) console.log(`# images kept in ${root.path}`)
  else root.cleanup()
})

/** Write data is regenerated from the op's seed, so ops stay small and replayable. */
function dataOf(o: Extract<Op, { op: 'write' }>): Uint8Array {
  return new Prng(o.seed).bytes(o.length)
}

/** Random data in some 4 KiB chunks, zeros in others (a base image with holes). */
function patterned(rng: Prng, size: number): Uint8Array {
  const out = new Uint8Array(size)
  for (let at = 0; at < size; at += 4 * KiB) {
    if (rng.chance(0.6)) out.set(rng.bytes(Math.min(4 * KiB, size - at)), at)
  }
  return out
}

/**
 * Data deflate and zstd shrink well yet unique at every position: each 64-byte line holds its
 * offset and a chunk-specific repeated word; a quarter of the 4 KiB chunks are zeros.
 */
function compressible(rng: Prng, size: number): Uint8Array {
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  for (let chunk = 0; chunk < size; chunk += 4 * KiB) {
    if (rng.chance(0.25)) continue
    const word = (rng.next() * 4294967296) >>> 0
    for (let line = chunk; line < Math.min(size, chunk + 4 * KiB); line += 64) {
      view.setUint32(line, line)
      for (let i = 4; i + 4 <= 64 && line + i + 4 <= size; i += 4) view.setUint32(line + i, word)
    }
  }
  return out
}

/** Makes the image of `s` in `dir` and the model matching its initial content. */
async function prepare(s: Scenario, seed: number, dir: string): Promise<Setup> {
  const path = join(dir, 'img')
  if (s.raw) {
    await createRaw(path, s.size)
    return {
      path, format: 'raw', model: new DiskModel({ kind: 'raw' }, s.size), clusterSize: 4 * KiB, subclusterSize: 512,
      coverage: s.size, v3: true, rawDataFile: undefined,
    }
  }
  if (s.compressed) {
    const c = s.compressed
    const content = compressible(new Prng(seed ^ 0xc0ffee), s.size)
    writeFileSync(join(dir, 'src.raw'), content)
    const opts = [`compat=${c.compat}`, `cluster_size=${c.clusterSize}`]
    if (c.extendedL2) opts.push('extended_l2=on')
    if (c.compressionType) opts.push(`compression_type=${c.compressionType}`)
    if (c.refcountBits) opts.push(`refcount_bits=${c.refcountBits}`)
    await runOk('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', opts.join(','), 'src.raw', 'img'], { cwd: dir })
    const check = JSON.parse((await run('qemu-img', ['check', '--output=json', 'img'], { cwd: dir })).stdout) as Record<string, number>
    assert.ok((check['compressed-clusters'] ?? 0) > 0, `${s.name}: qemu-img convert -c made no compressed clusters`)
    const subclusterSize = c.extendedL2 ? c.clusterSize / 32 : c.clusterSize
    return {
      path, format: 'qcow2', model: new DiskModel({ kind: 'qcow2', version: c.compat === '0.10' ? 2 : 3, clusterSize: c.clusterSize }, s.size, { initial: content }),
      clusterSize: c.clusterSize, subclusterSize, coverage: c.clusterSize * (c.clusterSize / (c.extendedL2 ? 16 : 8)),
      v3: c.compat !== '0.10', rawDataFile: undefined,
    }
  }
  const o = s.create ?? {}
  let backing: Uint8Array | undefined
  let backingFile: string | undefined
  if (s.base) {
    backing = patterned(new Prng(seed ^ 0xba5e), s.base.size)
    writeFileSync(join(dir, 'base.raw'), backing)
    backingFile = 'base.raw'
    if (s.base.format === 'qcow2') {
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', 'base.raw', 'base.qcow2'], { cwd: dir })
      backingFile = 'base.qcow2'
    }
  }
  await createQcow2(path, { ...o, size: s.size, backingFile, backingFormat: s.base?.format })
  const clusterSize = o.clusterSize ?? 64 * KiB
  const version = o.compat === '0.10' ? 2 : 3
  return {
    path, format: 'qcow2', model: new DiskModel({ kind: 'qcow2', version, clusterSize }, s.size, { backing }),
    clusterSize, subclusterSize: o.extendedL2 ? clusterSize / 32 : clusterSize,
    coverage: clusterSize * (clusterSize / (o.extendedL2 ? 16 : 8)), v3: version === 3,
    rawDataFile: o.dataFileRaw && o.dataFile !== undefined ? join(dir, o.dataFile) : undefined,
  }
}

/** A random op: offsets and lengths biased to cluster, subcluster and L2-table edges. */
function genOp(rng: Prng, st: Setup, weights: Record<OpKind, number>, maxLength: number): Op {
  const kind = rng.weighted(weights)
  if (kind === 'flush') return { op: 'flush' }
  const size = st.model.size
  const cs = st.clusterSize
  const unit = rng.pick([1, 512, st.subclusterSize, cs])
  let offset: number
  switch (rng.weighted({ any: 4, hot: 3, tail: 1, table: 1 })) {
    case 'any': offset = rng.int(size); break
    case 'hot': offset = rng.int(Math.min(size, Math.max(8 * cs, 64 * KiB))); break
    case 'tail': offset = size - 1 - rng.int(Math.min(size, 2 * cs)); break
    default: {
      const tables = Math.floor((size - 1) / st.coverage)
      offset = tables === 0 ? rng.int(size) : Math.max(0, st.coverage * rng.range(1, tables) - rng.int(2 * cs))
    }
  }
  offset = Math.floor(offset / unit) * unit
  let length: number
  switch (rng.weighted({ tiny: 2, sub: 2, cluster: 3, multi: 2, big: 1, empty: 0.05 })) {
    case 'tiny': length = rng.range(1, 64); break
    case 'sub': length = rng.range(1, 2 * st.subclusterSize); break
    case 'cluster': length = cs * rng.range(1, 2); break
    case 'multi': length = rng.range(cs, 6 * cs); break
    case 'big': length = rng.range(1, maxLength); break
    default: length = 0
  }
  if (length > 0 && rng.chance(0.5)) length = Math.max(unit, Math.round(length / unit) * unit)
  length = Math.min(length, size - offset, maxLength)
  switch (kind) {
    case 'write': return { op: 'write', offset, length, seed: (rng.next() * 4294967296) >>> 0 }
    case 'zero': return { op: 'zero', offset, length, unmap: false }
    case 'zeroUnmap': return { op: 'zero', offset, length, unmap: true }
    default: return { op: 'discard', offset, length }
  }
}

async function applyOp(device: BlockDevice, o: Op, data = o.op === 'write' ? dataOf(o) : undefined): Promise<void> {
  switch (o.op) {
    case 'write': await device.write(o.offset, data!); break
    case 'zero': await device.writeZeroes(o.offset, o.length, { unmap: o.unmap }); break
    case 'discard': await device.discard(o.offset, o.length); break
    case 'flush': await device.flush(); break
  }
}

/** Asserts the device reads `[from, to)` exactly as the model. */
async function verifyRange(device: BlockDevice, model: DiskModel, from: number, to: number, what: string): Promise<void> {
  if (to <= from) return
  const got = await device.read(from, to - from)
  const at = firstDifference(got, model.bytes.subarray(from, to))
  if (at < 0) return
  const where = from + at
  assert.fail(`${what}: guest byte ${where} (0x${where.toString(16)}) reads ${got[at]}, model has ${model.bytes[where]}` +
    (model.backing ? ` (backing has ${model.backing[where]})` : ''))
}

async function verifyAll(device: BlockDevice, model: DiskModel, what: string): Promise<void> {
  assert.equal(device.size, model.size, `${what}: virtual size`)
  for (let at = 0; at < model.size; at += 16 * MiB) await verifyRange(device, model, at, Math.min(model.size, at + 16 * MiB), what)
}

/** qemu-img check: exit 0, and the JSON names no corruption, leak or check error. */
async function qemuCheck(path: string, what: string): Promise<Record<string, unknown>> {
  // QEMU 7.2 opens a relative external data file name from the working directory.
  const r = await run('qemu-img', ['check', '--output=json', '-f', 'qcow2', path], { cwd: dirname(path) })
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>
  } catch {
    // reported below with the raw output
  }
  const detail = `${r.stdout.trim()} ${r.stderr.split('\n').slice(0, 12).join('\n')}`
  assert.equal(r.code, 0, `${what}: qemu-img check exited ${r.code}: ${detail}`)
  for (const key of ['corruptions', 'leaks', 'check-errors']) assert.ok(!json[key], `${what}: qemu-img check reports ${key}: ${detail}`)
  return json
}

/** Writes `bytes` to a new file, leaving holes where 64 KiB blocks are all zero. */
function writeSparse(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'w')
  try {
    ftruncateSync(fd, bytes.length)
    const block = 64 * KiB
    const zeros = Buffer.alloc(block)
    for (let at = 0; at < bytes.length; at += block) {
      const chunk = Buffer.from(bytes.buffer, bytes.byteOffset + at, Math.min(block, bytes.length - at))
      if (!chunk.equals(zeros.subarray(0, chunk.length))) writeSync(fd, chunk, 0, chunk.length, at)
    }
  } finally {
    closeSync(fd)
  }
}

/** Everything checked on a closed image: qemu-img check and compare, header bits, raw data file. */
async function checkClosed(st: Setup, what: string): Promise<void> {
  if (st.format === 'qcow2') {
    await qemuCheck(st.path, what)
    if (st.v3) {
      const fd = openSync(st.path, 'r')
      const header = Buffer.alloc(8)
      readSync(fd, header, 0, 8, 72)
      closeSync(fd)
      assert.equal(header.readBigUInt64BE(0) & 3n, 0n, `${what}: dirty or corrupt bit left set after close (incompatible features 0x${header.readBigUInt64BE(0).toString(16)})`)
    }
  }
  const raw = `${st.path}.model.raw`
  writeSparse(raw, st.model.bytes)
  const r = await run('qemu-img', ['compare', '-f', st.format, '-F', 'raw', st.path, raw], { cwd: dirname(st.path) })
  assert.equal(r.code, 0, `${what}: qemu-img compare with the model: ${r.stdout.trim()} ${r.stderr.trim()}`)
  if (st.rawDataFile) {
    // data_file_raw: the data file alone must be a valid raw image of the disk.
    const data = readFileSync(st.rawDataFile)
    const expect = Buffer.alloc(st.model.size)
    expect.set(st.model.bytes)
    const at = firstDifference(data.subarray(0, st.model.size), expect)
    assert.ok(data.length >= st.model.size && at < 0, `${what}: raw external data file differs from the disk at byte ${at} (file length ${data.length})`)
  }
}

async function runScenario(s: Scenario): Promise<void> {
  const seed = SEED ?? s.seed
  const tag = `[${s.name} seed=${seed}]`
  const dir = mkdtempSync(join(root.path, 'case-'))
  const st = await prepare(s, seed, dir)
  const rng = new Prng(seed)
  const weights = { ...DEFAULT_WEIGHTS, ...s.weights }
  const maxLength = s.maxLength ?? 256 * KiB
  const ops = Math.max(1, Math.round(s.ops * SCALE))
  const open = () => openImage(st.path, { writable: true, format: st.format, l2CacheSize: s.l2CacheSize })
  let device: BlockDevice | undefined = await open()
  const history: Op[] = []
  try {
    for (let i = 0; i < ops; i++) {
      const o = genOp(rng, st, weights, maxLength)
      history.push(o)
      const data = o.op === 'write' ? dataOf(o) : undefined
      const what = `${tag} op #${i} ${describeOp(o)} (before it: ${history.slice(-6, -1).map(describeOp).join('; ') || 'nothing'})`
      // The model first: it copies the data, so an engine that changed the caller's buffer shows.
      st.model.apply(o, () => data!)
      try {
        await applyOp(device, o, data)
      } catch (e) {
        assert.fail(`${what}: threw ${(e as Error).stack ?? String(e)}`)
      }
      if (o.op !== 'flush') {
        const margin = st.clusterSize + 512
        await verifyRange(device, st.model, Math.max(0, o.offset - margin), Math.min(st.model.size, o.offset + o.length + margin), what)
      }
      if (i % 16 === 15) {
        const from = rng.int(st.model.size)
        await verifyRange(device, st.model, from, Math.min(st.model.size, from + rng.range(1, 4 * st.clusterSize)), `${what} (random window)`)
      }
      if (s.reopenEvery && (i + 1) % s.reopenEvery === 0 && i + 1 < ops) {
        await verifyAll(device, st.model, `${what}, before re-open`)
        await device.close()
        device = undefined
        await checkClosed(st, `${what}, closed mid-sequence`)
        device = await open()
        await verifyAll(device, st.model, `${what}, after re-open`)
      }
    }
    await verifyAll(device, st.model, `${tag} after ${ops} ops`)
  } finally {
    await device?.close()
  }
  await checkClosed(st, `${tag} after ${ops} ops`)
  const ro = await openImage(st.path, { format: st.format })
  try {
    await verifyAll(ro, st.model, `${tag} re-opened read-only`)
  } finally {
    await ro.close()
  }
  await s.extra?.(st.path, tag)
}

// ---------------------------------------------------------------------------------------------
// The matrix.

const SCENARIOS: Scenario[] = []
let nextSeed = 0x51ed_0000
function add(s: Omit<Scenario, 'seed'> & { seed?: number }): void {
  SCENARIOS.push({ ...s, seed: s.seed ?? nextSeed++ })
}

/** After the sequence the refcount table must have moved to a bigger one. */
async function reftableGrew(path: string, tag: string): Promise<void> {
  const reftableClusters = readHeaderU32(path, 56)
  assert.ok(reftableClusters > 1, `${tag}: the refcount table did not grow (${reftableClusters} cluster)`)
}

// Every cluster size, v3 and v2 (small ones on small images; big ones get fewer, larger ops).
for (const bits of [9, 10, 11, 12, 13, 14, 15, 16]) {
  const cs = 2 ** bits
  add({ name: `v3 cluster ${cs}`, size: 3 * MiB + 1536, ops: 80, create: { clusterSize: cs } })
}
for (const bits of [17, 18, 19, 20, 21]) {
  const cs = 2 ** bits
  add({ name: `v3 cluster ${cs}`, size: 8 * MiB - 512, ops: 25, create: { clusterSize: cs }, maxLength: 3 * MiB })
}
for (const bits of [9, 11, 12, 14, 16, 21]) {
  const cs = 2 ** bits
  add({ name: `v2 cluster ${cs}`, size: bits > 16 ? 8 * MiB : 3 * MiB - 512, ops: bits > 16 ? 25 : 80, create: { compat: '0.10', clusterSize: cs }, maxLength: 3 * MiB })
}

// Refcount widths (1/16/64 over several cluster sizes; the other widths once).
for (const bits of [1, 2, 4, 8, 32, 64]) add({ name: `refcount_bits ${bits} cluster 4096`, size: 2 * MiB, ops: 60, create: { clusterSize: 4 * KiB, refcountBits: bits } })
for (const bits of [1, 64]) {
  add({ name: `refcount_bits ${bits} cluster 512`, size: 2 * MiB, ops: 80, create: { clusterSize: 512, refcountBits: bits } })
  add({ name: `refcount_bits ${bits} cluster 65536`, size: 4 * MiB, ops: 60, create: { clusterSize: 64 * KiB, refcountBits: bits } })
}

// Extended L2 (subclusters): writes, zero writes and discards inside and across subclusters.
for (const bits of [14, 15, 16, 17, 21]) {
  const cs = 2 ** bits
  add({ name: `extended_l2 cluster ${cs}`, size: bits > 16 ? 8 * MiB : 4 * MiB, ops: bits > 16 ? 30 : 100, create: { clusterSize: cs, extendedL2: true }, maxLength: 2 * MiB })
}
add({ name: 'extended_l2 cluster 16384 refcount_bits 1', size: 2 * MiB, ops: 80, create: { clusterSize: 16 * KiB, extendedL2: true, refcountBits: 1 } })

// Lazy refcounts.
add({ name: 'lazy_refcounts cluster 4096', size: 2 * MiB, ops: 80, create: { clusterSize: 4 * KiB, lazyRefcounts: true } })
add({ name: 'lazy_refcounts cluster 65536 reopen', size: 4 * MiB, ops: 90, create: { lazyRefcounts: true }, reopenEvery: 30 })
add({ name: 'lazy_refcounts extended_l2 cluster 32768', size: 4 * MiB, ops: 80, create: { clusterSize: 32 * KiB, lazyRefcounts: true, extendedL2: true } })

// Preallocation modes.
for (const mode of ['metadata', 'falloc', 'full'] as const) {
  add({ name: `preallocation ${mode} cluster 4096`, size: 2 * MiB + 512, ops: 60, create: { clusterSize: 4 * KiB, preallocation: mode } })
  add({ name: `preallocation ${mode} v2 cluster 65536`, size: 3 * MiB, ops: 50, create: { compat: '0.10', preallocation: mode } })
  add({ name: `preallocation ${mode} extended_l2 over qcow2 backing`, size: 3 * MiB, ops: 60, create: { clusterSize: 32 * KiB, extendedL2: true, preallocation: mode }, base: { format: 'qcow2', size: 2 * MiB } })
}
add({ name: 'preallocation metadata cluster 512 refcount_bits 64', size: 1 * MiB, ops: 80, create: { clusterSize: 512, refcountBits: 64, preallocation: 'metadata' } })

// External data file.
add({ name: 'data_file cluster 4096', size: 2 * MiB, ops: 80, create: { clusterSize: 4 * KiB, dataFile: 'img.data' } })
add({ name: 'data_file cluster 65536 reopen', size: 4 * MiB, ops: 75, create: { dataFile: 'img.data' }, reopenEvery: 25 })
add({ name: 'data_file extended_l2 cluster 16384', size: 4 * MiB, ops: 80, create: { clusterSize: 16 * KiB, extendedL2: true, dataFile: 'img.data' } })
add({ name: 'data_file preallocation metadata', size: 2 * MiB, ops: 60, create: { clusterSize: 8 * KiB, dataFile: 'img.data', preallocation: 'metadata' } })
add({ name: 'data_file over qcow2 backing', size: 3 * MiB, ops: 80, create: { clusterSize: 4 * KiB, dataFile: 'img.data' }, base: { format: 'qcow2', size: 3 * MiB } })
add({ name: 'data_file_raw cluster 4096', size: 2 * MiB, ops: 80, create: { clusterSize: 4 * KiB, dataFile: 'img.data', dataFileRaw: true } })
add({ name: 'data_file_raw extended_l2 cluster 16384', size: 2 * MiB, ops: 60, create: { clusterSize: 16 * KiB, extendedL2: true, dataFile: 'img.data', dataFileRaw: true } })

// Over a backing file (qcow2 or raw; shorter than the overlay so its end shows too).
for (const format of ['qcow2', 'raw'] as const) {
  for (const [compat, cs] of [['1.1', 512], ['1.1', 4096], ['1.1', 65536], ['0.10', 512], ['0.10', 4096], ['0.10', 65536]] as const) {
    add({ name: `${compat === '1.1' ? 'v3' : 'v2'} cluster ${cs} over ${format} backing`, size: 3 * MiB, ops: cs === 512 ? 60 : 80, create: { compat, clusterSize: cs }, base: { format, size: 2 * MiB + 4096 } })
  }
  add({ name: `extended_l2 cluster 16384 over ${format} backing`, size: 3 * MiB, ops: 100, create: { clusterSize: 16 * KiB, extendedL2: true }, base: { format, size: 2 * MiB + 4096 } })
}
add({ name: 'extended_l2 cluster 65536 over qcow2 backing, discard-heavy', size: 3 * MiB, ops: 80, create: { extendedL2: true }, base: { format: 'qcow2', size: 3 * MiB }, weights: { discard: 5, zeroUnmap: 3 } })
add({ name: 'v2 cluster 4096 over raw backing, discard-heavy', size: 2 * MiB, ops: 80, create: { compat: '0.10', clusterSize: 4 * KiB }, base: { format: 'raw', size: 2 * MiB }, weights: { discard: 5 } })
add({ name: 'lazy_refcounts refcount_bits 64 cluster 1024 over qcow2 backing', size: 2 * MiB, ops: 80, create: { clusterSize: KiB, refcountBits: 64, lazyRefcounts: true }, base: { format: 'qcow2', size: 2 * MiB } })

// Over compressed clusters made by qemu-img convert -c.
add({ name: 'compressed v3 cluster 65536', size: 4 * MiB, ops: 60, compressed: { compat: '1.1', clusterSize: 64 * KiB } })
add({ name: 'compressed v3 cluster 4096', size: 2 * MiB, ops: 80, compressed: { compat: '1.1', clusterSize: 4 * KiB } })
add({ name: 'compressed v3 cluster 512 refcount_bits 64', size: 1 * MiB, ops: 80, compressed: { compat: '1.1', clusterSize: 512, refcountBits: 64 } })
add({ name: 'compressed v2 cluster 65536', size: 4 * MiB, ops: 60, compressed: { compat: '0.10', clusterSize: 64 * KiB } })
add({ name: 'compressed v2 cluster 2048', size: 2 * MiB, ops: 80, compressed: { compat: '0.10', clusterSize: 2 * KiB } })
add({ name: 'compressed zstd cluster 65536', size: 4 * MiB, ops: 60, compressed: { compat: '1.1', clusterSize: 64 * KiB, compressionType: 'zstd' } })
add({ name: 'compressed extended_l2 cluster 32768', size: 4 * MiB, ops: 60, compressed: { compat: '1.1', clusterSize: 32 * KiB, extendedL2: true } })
add({ name: 'compressed v3 cluster 16384 reopen', size: 2 * MiB, ops: 60, compressed: { compat: '1.1', clusterSize: 16 * KiB }, reopenEvery: 20 })

// Re-opening mid-sequence (metadata must be durable and complete at every close).
add({ name: 'reopen v3 cluster 1024', size: 2 * MiB, ops: 100, create: { clusterSize: KiB }, reopenEvery: 25 })
add({ name: 'reopen v2 cluster 8192 over qcow2 backing', size: 2 * MiB, ops: 80, create: { compat: '0.10', clusterSize: 8 * KiB }, base: { format: 'qcow2', size: 2 * MiB }, reopenEvery: 25 })
add({ name: 'reopen extended_l2 cluster 16384 refcount_bits 64', size: 2 * MiB, ops: 80, create: { clusterSize: 16 * KiB, extendedL2: true, refcountBits: 64 }, reopenEvery: 25 })

// Raw images (raw discard reads zeros).
add({ name: 'raw', size: 2 * MiB + 512, ops: 80, raw: true })

// Refcount table growth: 64-bit refcounts and 512-byte clusters (one block covers 64 clusters,
// the first one-cluster table 2 MiB of file) under a write-heavy sequence.
add({
  name: 'refcount table growth: refcount_bits 64 cluster 512', size: 4 * MiB, ops: 120, create: { clusterSize: 512, refcountBits: 64 },
  weights: { write: 10, zero: 1, zeroUnmap: 1, discard: 1, flush: 0.2 }, maxLength: MiB, reopenEvery: 60, extra: reftableGrew,
})
// 1-bit refcounts and 512-byte clusters: one block covers 2 MiB of file and the first table 128
// MiB, so a 130 MiB disk preallocated with metadata (≈132 MiB of clusters) must grow it; then
// random ops free and reuse clusters with refcounts that can only be 0 or 1.
// Runs on its own after the others: its 130 MiB model would make every qemu-img spawn (fork) of
// scenarios running alongside slower.
const BIG: Scenario = {
  name: 'refcount table growth: refcount_bits 1 cluster 512 preallocation metadata', size: 130 * MiB, ops: 50, seed: nextSeed++,
  create: { clusterSize: 512, refcountBits: 1, preallocation: 'metadata' }, extra: reftableGrew,
}
// L2 cache eviction: 128 L2 tables of 512-byte clusters through a 4-table cache.
add({ name: 'L2 cache eviction: l2CacheSize 2 KiB cluster 512', size: 4 * MiB, ops: 120, create: { clusterSize: 512 }, l2CacheSize: 2 * KiB, reopenEvery: 60 })
add({ name: 'L2 cache eviction: l2CacheSize 32 KiB extended_l2 over backing', size: 4 * MiB, ops: 80, create: { clusterSize: 16 * KiB, extendedL2: true }, base: { format: 'qcow2', size: 4 * MiB }, l2CacheSize: 32 * KiB })

function readHeaderU64(path: string, offset: number): number {
  return readHeaderU32(path, offset) * 2 ** 32 + readHeaderU32(path, offset + 4)
}

function readHeaderU32(path: string, offset: number): number {
  const fd = openSync(path, 'r')
  try {
    const b = Buffer.alloc(4)
    readSync(fd, b, 0, 4, offset)
    return b.readUInt32BE(0)
  } finally {
    closeSync(fd)
  }
}

describe('write engine against the model (seeded random op sequences)', { concurrency: 2 }, () => {
  for (const s of SCENARIOS) {
    if (ONLY !== undefined && !s.name.includes(ONLY)) continue
    it(s.name, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      await runScenario(s)
    })
  }
})

describe('write engine against the model: a large image', () => {
  if (ONLY === undefined || BIG.name.includes(ONLY)) {
    it(BIG.name, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      await runScenario(BIG)
    })
  }
})

describe('bounded caches', () => {
  it('a tiny L2 cache re-reads evicted tables and still writes correctly', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const dir = mkdtempSync(join(root.path, 'cache-'))
    const path = join(dir, 'img')
    const cs = 512
    const size = 2 * MiB
    await createQcow2(path, { size, clusterSize: cs })
    const storage = new CountingStorage(await FileStorage.open(path, { writable: true }))
    const device = await openImage(storage, { writable: true, format: 'qcow2', l2CacheSize: 2 * cs })
    const model = new DiskModel({ kind: 'qcow2', version: 3, clusterSize: cs }, size)
    const rng = new Prng(0xcace)
    const coverage = cs * (cs / 8)
    try {
      // Touch every L2 table twice, round robin, so a cache of 2 tables must evict each time.
      for (let round = 0; round < 2; round++) {
        for (let table = 0; table < size / coverage; table++) {
          const offset = table * coverage + rng.int(coverage - 2 * cs)
          const o: Op = { op: 'write', offset, length: rng.range(1, 2 * cs), seed: rng.int(2 ** 32) }
          await applyOp(device, o)
          model.apply(o, dataOf)
        }
      }
      await verifyAll(device, model, 'tiny L2 cache')
      const refcountCache = (device.driver as unknown as { writer: { refcounts: { cache: { size: number; capacity: number } } } }).writer.refcounts.cache
      assert.ok(refcountCache.size <= refcountCache.capacity, `refcount block cache holds ${refcountCache.size} > ${refcountCache.capacity}`)
    } finally {
      await device.close()
    }
    // Which of the cluster-sized reads were L2 tables: the L1 table names them.
    const l1 = readFileSync(path).subarray(readHeaderU64(path, 40), readHeaderU64(path, 40) + 8 * readHeaderU32(path, 36))
    const tables = [...Array(l1.length / 8).keys()].map((i) => Number(l1.readBigUInt64BE(i * 8) & 0x00ff_ffff_ffff_fe00n)).filter((o) => o !== 0)
    assert.equal(tables.length, size / coverage, 'every L2 table allocated')
    const reread = tables.filter((o) => (storage.clusterReads.get(o) ?? 0) >= 1).length
    assert.ok(reread >= tables.length / 2, `expected evicted L2 tables to be read back, ${reread} of ${tables.length} were`)
    await qemuCheck(path, 'tiny L2 cache')
    writeSparse(`${path}.raw`, model.bytes)
    const r = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', path, `${path}.raw`])
    assert.equal(r.code, 0, `tiny L2 cache: qemu-img compare: ${r.stdout} ${r.stderr}`)
  })
})

/** A file storage that counts cluster-sized reads per offset (metadata table loads). */
class CountingStorage implements Storage {
  readonly clusterReads = new Map<number, number>()
  constructor(readonly inner: FileStorage, readonly tableSize = 512) {}
  get name(): string {
    return this.inner.name
  }
  size(): Promise<number> {
    return this.inner.size()
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    if (length === this.tableSize) this.clusterReads.set(offset, (this.clusterReads.get(offset) ?? 0) + 1)
    return this.inner.read(offset, length)
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(offset, data)
  }
  flush(): Promise<void> {
    return this.inner.flush()
  }
  truncate(length: number): Promise<void> {
    return this.inner.truncate(length)
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}
