// Seeded fuzzing of image metadata: mutate bytes and fields of valid images thousands of times;
// every open, read, info and block-status call must succeed or reject with an ImageError, in
// bounded time and memory. Anything else (TypeError, RangeError, a hang) is a qimg bug.
//
// Reproduce a failure with the seed and case it prints:
//   QIMG_FUZZ_SEED=<seed> QIMG_FUZZ_CASE=<base>:<case> node --test dist/test/failure/fuzz.test.js
// QIMG_FUZZ_SCALE=<n> multiplies the number of cases (default 1: 21,000 cases).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { openChain } from '../../src/format/chain.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs } from '../../src/node/codecs.js'
import { HEADER_FIELDS, SNAPSHOT_FIELDS, peek, poke, type BuiltImage } from '../helpers/build-qcow2.js'
import { memoryHost } from '../helpers/memory-host.js'
import { BASES, plainImage } from './bases.js'

/** mulberry32: a tiny seeded PRNG returning uint32s. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

const SEED = Number(process.env['QIMG_FUZZ_SEED'] ?? 0x5eed_2024) >>> 0
const SCALE = Number(process.env['QIMG_FUZZ_SCALE'] ?? 1)
const ONLY = process.env['QIMG_FUZZ_CASE']
/** Per-case limits: wall time, guest bytes read, block-status calls. */
const CASE_TIME_MS = 2000
const READ_CAP = 16 * 1024 * 1024
const STATUS_CAP = 20_000
/** Resident memory may not grow beyond this over the whole run. */
const RSS_GROWTH_CAP = 512 * 1024 * 1024

const CASES: Record<string, number> = {
  plain: 4000, snapshot: 3000, compressed: 3000, 'extended-l2': 3000, 'backing-bitmaps': 3000, 'data-file': 2500, v2: 2500,
}

/** A region of metadata bytes, and typed fields inside metadata. */
interface Target { regions: [number, number][]; fields: [number, 1 | 2 | 4 | 8][] }

function targetsOf(image: BuiltImage): Target {
  const { bytes, layout } = image
  const cs = layout.clusterSize
  const regions: [number, number][] = []
  const fields: [number, 1 | 2 | 4 | 8][] = []
  // Header, extensions and the backing file name.
  let headerEnd = layout.headerLength + 8
  for (const e of layout.extensions) {
    headerEnd = e.offset + 8 + Math.ceil(e.length / 8) * 8 + 8
    fields.push([e.offset, 4], [e.offset + 4, 4])
    if (e.type === 0x23852875) fields.push([e.offset + 8, 4], [e.offset + 16, 8], [e.offset + 24, 8])
  }
  if (layout.backingFileOffset) headerEnd = Math.max(headerEnd, layout.backingFileOffset + Number(peek(bytes, 16, 4)))
  regions.push([0, headerEnd])
  for (const [offset, width] of Object.values(HEADER_FIELDS)) if (offset < layout.headerLength) fields.push([offset, width])
  // L1, L2 tables (whole table: unused entries become garbage entries too).
  regions.push([layout.l1TableOffset, layout.l1TableOffset + layout.l1Size * 8])
  for (let i = 0; i < layout.l1Size; i++) fields.push([layout.l1TableOffset + i * 8, 8])
  for (const l2 of layout.l2Tables.values()) {
    regions.push([l2, l2 + Math.min(cs, 1024)])
    for (let at = 0; at < Math.min(cs, 1024); at += 8) if (peek(bytes, l2 + at, 8) !== 0n) fields.push([l2 + at, 8])
  }
  // Refcount table and blocks.
  regions.push([layout.refcountTableOffset, layout.refcountTableOffset + layout.refblocks.length * 8])
  for (let i = 0; i < layout.refblocks.length; i++) fields.push([layout.refcountTableOffset + i * 8, 8])
  for (const b of layout.refblocks) regions.push([b, b + Math.min(cs, 256)])
  // Snapshot table and snapshot L1 tables.
  for (const s of layout.snapshots) {
    regions.push([s.entryOffset, s.entryOffset + 64 + 16], [s.l1TableOffset, s.l1TableOffset + s.l1Size * 8])
    for (const [offset, width] of Object.values(SNAPSHOT_FIELDS)) fields.push([s.entryOffset + offset, width])
    fields.push([s.entryOffset + 40, 8], [s.entryOffset + 48, 8], [s.entryOffset + 56, 8])
  }
  // Bitmap directory and tables.
  if (layout.bitmapDirectoryOffset) {
    regions.push([layout.bitmapDirectoryOffset, layout.bitmapDirectoryOffset + 64])
    for (const at of [0, 32]) {
      const e = layout.bitmapDirectoryOffset + at
      fields.push([e, 8], [e + 8, 4], [e + 12, 4], [e + 16, 1], [e + 17, 1], [e + 18, 2], [e + 20, 4])
    }
    for (const t of layout.bitmapTables) regions.push([t, t + 16])
  }
  // Compressed streams (decoder robustness).
  for (const c of layout.compressed.values()) regions.push([c.hostOffset, c.hostOffset + c.length])
  return { regions: regions.filter(([a, b]) => b > a), fields }
}

/** A boundary value for a field of `width` bytes currently holding `old`. */
function boundary(rand: () => number, width: 1 | 2 | 4 | 8, old: bigint, fileSize: number, cs: number): bigint {
  const max = (1n << BigInt(width * 8)) - 1n
  const candidates: bigint[] = [
    0n, 1n, max, 1n << BigInt(width * 8 - 1), old + 1n, old - 1n, old ^ (1n << BigInt(rand() % (width * 8))),
    BigInt(fileSize), BigInt(fileSize) - 8n, BigInt(fileSize + cs), BigInt(cs), old + BigInt(cs), old - BigInt(cs), old * 2n,
    0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn, 65536n, 65537n, 4_194_305n, 1n << 53n, (1n << 53n) - 1n, 1n << 40n,
    (1n << 56n) - BigInt(cs), 1n << 62n, 1n << 63n, (1n << 63n) | BigInt(fileSize), BigInt(rand()) * 0x1_0000_0000n + BigInt(rand()),
  ]
  return candidates[rand() % candidates.length]! & max
}

/** Applies 1-4 mutations; returns a description of each. */
function mutate(rand: () => number, bytes: Uint8Array, target: Target, cs: number): string[] {
  const done: string[] = []
  const count = 1 + (rand() % 4)
  for (let m = 0; m < count; m++) {
    if (rand() % 2 === 0 && target.fields.length > 0) {
      const [offset, width] = target.fields[rand() % target.fields.length]!
      const old = peek(bytes, offset, width)
      const value = boundary(rand, width, old, bytes.length, cs)
      poke(bytes, offset, width, value)
      done.push(`u${width * 8}@0x${offset.toString(16)}: 0x${old.toString(16)}→0x${value.toString(16)}`)
    } else {
      const [start, end] = target.regions[rand() % target.regions.length]!
      const offset = start + (rand() % (end - start))
      const old = bytes[offset]!
      const value = rand() % 3 === 0 ? old ^ (1 << (rand() % 8)) : rand() & 0xff
      bytes[offset] = value
      done.push(`byte@0x${offset.toString(16)}: 0x${old.toString(16)}→0x${value.toString(16)}`)
    }
  }
  return done
}

/** Memory storage that also claims a small host allocation, so map consults refcounts. */
class SparseMemoryStorage extends MemoryStorage {
  async allocatedSize(): Promise<number> {
    return Math.floor((await this.size()) / 4)
  }
}

/** Everything a reader does with an image: read all, info, block status over the disk. */
async function exercise(device: BlockDevice): Promise<void> {
  const chunk = 1024 * 1024
  let read = 0
  for (let offset = 0; offset < device.size && read < READ_CAP; offset += chunk) {
    const length = Math.min(chunk, device.size - offset)
    await device.read(offset, length)
    read += length
  }
  if (device.size > READ_CAP) await device.read(device.size - Math.min(device.size, 65536), Math.min(device.size, 65536))
  for (const layer of device.chain) await layer.info()
  let steps = 0
  for (let offset = 0; offset < device.size && steps < STATUS_CAP; steps++) {
    const status = await device.blockStatus(offset, device.size - offset)
    assert.ok(status.length > 0, `block status at ${offset} made no progress`)
    offset += status.length
  }
}

const NAMES_FILE = /fuzz\.qcow2|base\.qcow2|disk\.raw|^Could not open backing file: Could not open '|^Unknown driver '/

/** Runs one case; resolves to the outcome ('ok' or an ImageError code) or the unexpected error. */
async function runCase(bytes: Uint8Array, extra: Record<string, Uint8Array>, policy: 'follow' | 'deny', snapshot: string | undefined): Promise<string | { bug: unknown }> {
  const host = memoryHost(extra)
  const storage = new SparseMemoryStorage(bytes, 'fuzz.qcow2')
  try {
    const device = await openChain(storage, { format: 'qcow2', codecs: nodeCodecs, host, fileReferences: policy, snapshot })
    try {
      await exercise(device)
    } finally {
      await device.close()
    }
  } catch (e) {
    if (!isImageError(e)) return { bug: e }
    // Every message names the file it is about (a mutated backing file name, quoted by "Could
    // not open", and an unknown backing format are the exceptions).
    if (!NAMES_FILE.test(e.message)) return { bug: new Error(`${e.code} message names no file: ${e.message}`) }
    return e.code
  }
  return 'ok'
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

const baseline = process.memoryUsage().rss
const backingBytes = plainImage().bytes

Object.keys(CASES).forEach((name, baseIndex) => {
  test(`fuzz ${name}: ${Math.round(CASES[name]! * SCALE)} mutated images (seed ${SEED})`, { timeout: 120_000 }, async (t) => {
    const image = BASES[name]!()
    const target = targetsOf(image)
    const extra: Record<string, Uint8Array> = { 'base.qcow2': backingBytes }
    if (image.dataFile) extra['disk.raw'] = image.dataFile
    const snapshots = image.layout.snapshots.length
    const failures: string[] = []
    const outcomes = new Map<string, number>()
    const total = Math.round(CASES[name]! * SCALE)
    for (let i = 0; i < total && failures.length < 5; i++) {
      if (ONLY !== undefined && ONLY !== `${name}:${i}`) continue
      const rand = mulberry32((SEED ^ Math.imul(baseIndex + 1, 0x9e37_79b9) ^ Math.imul(i + 1, 0x85eb_ca6b)) >>> 0)
      const bytes = image.bytes.slice()
      const mutations = mutate(rand, bytes, target, image.layout.clusterSize)
      const policy = rand() % 4 === 0 ? 'deny' : 'follow'
      const snapshot = snapshots > 0 && rand() % 3 === 0 ? String(1 + (rand() % snapshots)) : undefined
      const where = `QIMG_FUZZ_SEED=${SEED} QIMG_FUZZ_CASE=${name}:${i} (${mutations.join(', ')}; policy ${policy}${snapshot ? `, snapshot ${snapshot}` : ''})`
      const started = performance.now()
      const outcome = await withTimeout(runCase(bytes, extra, policy, snapshot), CASE_TIME_MS)
      const elapsed = performance.now() - started
      if (outcome === 'timeout') failures.push(`${where}: did not finish in ${CASE_TIME_MS} ms`)
      else if (typeof outcome !== 'string') failures.push(`${where}: ${(outcome.bug as Error).stack ?? String(outcome.bug)}`)
      else outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      if (elapsed > CASE_TIME_MS) failures.push(`${where}: took ${Math.round(elapsed)} ms`)
      if (i % 500 === 0) {
        const rss = process.memoryUsage().rss
        if (rss - baseline > RSS_GROWTH_CAP) failures.push(`${where}: resident memory grew by ${Math.round((rss - baseline) / 2 ** 20)} MiB`)
      }
    }
    t.diagnostic(`outcomes: ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    if (failures.length > 0) assert.fail(`seed ${SEED}: ${failures.length} bad outcome(s):\n${failures.join('\n\n')}`)
  })
})
