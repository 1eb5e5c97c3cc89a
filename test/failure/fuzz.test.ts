// Seeded fuzzing of image metadata: mutate bytes and fields of valid images thousands of times;
// every open, read, info, block-status and check call (and writes, in the last test) must
// succeed or reject with an ImageError, in bounded time and memory. Anything else (TypeError,
// RangeError, a hang) is a qimg bug.
//
// Reproduce a failure with the seed and case it prints:
//   QIMG_FUZZ_SEED=<seed> QIMG_FUZZ_CASE=<base>:<case> node --test dist/test/failure/fuzz.test.js
// QIMG_FUZZ_SCALE=<n> multiplies the number of cases (default 1: 21,000 read cases, 3,500 write cases).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError, type ImageError } from '../../src/errors.js'
import { openChain } from '../../src/format/chain.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs } from '../../src/node/codecs.js'
import { checkQcow2 } from '../../src/qcow2/check.js'
import { memoryHost } from '../helpers/memory-host.js'
import { BASES, plainImage } from './bases.js'
import { mulberry32, mutate, targetsOf } from './mutate.js'

const SEED = Number(process.env['QIMG_FUZZ_SEED'] ?? 0x5eed_2024) >>> 0
const SCALE = Number(process.env['QIMG_FUZZ_SCALE'] ?? 1)
const ONLY = process.env['QIMG_FUZZ_CASE']
/**
 * Per-case limits: CPU time (a loaded machine does not make it flaky; cases take a few ms),
 * wall time for a case that never settles, guest bytes read, block-status calls.
 */
const CASE_CPU_MS = 1000
const CASE_HANG_MS = 30_000
const READ_CAP = 16 * 1024 * 1024
const STATUS_CAP = 20_000
/** Resident memory may not grow beyond this over the whole run. */
const RSS_GROWTH_CAP = 512 * 1024 * 1024

/** Cases with writes (opened read-write, written, reopened and read), spread over the bases. */
const WRITE_CASES = 3500

const CASES: Record<string, number> = {
  plain: 4000, snapshot: 3000, compressed: 3000, 'extended-l2': 3000, 'backing-bitmaps': 3000, 'data-file': 2500, v2: 2500,
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

const NAMES_FILE = /fuzz\.qcow2|base\.qcow2|disk\.raw|^Could not open backing file: (Could not open '|Unknown driver ')/

/** Undefined for an acceptable failure: an ImageError whose message names the file it is about. */
function judge(e: unknown): { bug: unknown } | undefined {
  if (!isImageError(e)) return { bug: e }
  // A mutated backing file name (quoted by "Could not open") and an unknown backing format
  // are the only messages that may not name one of the case's files.
  if (!NAMES_FILE.test(e.message)) return { bug: new Error(`${e.code} message names no file: ${e.message}`) }
  return undefined
}

/** Runs one case; resolves to the outcome ('ok' or an ImageError code) or the unexpected error. */
async function runCase(bytes: Uint8Array, extra: Record<string, Uint8Array>, policy: 'follow' | 'deny', snapshot: string | undefined): Promise<string | { bug: unknown }> {
  let outcome = 'ok'
  try {
    const device = await openChain(new SparseMemoryStorage(bytes, 'fuzz.qcow2'), { format: 'qcow2', codecs: nodeCodecs, host: memoryHost(extra), fileReferences: policy, snapshot })
    try {
      await exercise(device)
    } finally {
      await device.close()
    }
  } catch (e) {
    const bad = judge(e)
    if (bad) return bad
    outcome = (e as ImageError).code
  }
  // check reads every structure and reports what is wrong (it throws only when it cannot start).
  try {
    await checkQcow2(new MemoryStorage(bytes, 'fuzz.qcow2'))
  } catch (e) {
    const bad = judge(e)
    if (bad) return bad
  }
  return outcome
}

/** Writes to a mutated image opened for writing, then reads the result back. */
async function runWriteCase(rand: () => number, bytes: Uint8Array, extra: Record<string, Uint8Array>, cs: number): Promise<string | { bug: unknown }> {
  const host = memoryHost(extra)
  const storage = new MemoryStorage(bytes, 'fuzz.qcow2')
  try {
    const device = await openChain(storage, { format: 'qcow2', codecs: nodeCodecs, host, writable: true })
    try {
      const span = Math.min(device.size, 1024 * 1024)
      for (let op = 0; op < 4 && span > 0; op++) {
        const offset = rand() % span
        const length = Math.min(1 + (rand() % (2 * cs)), device.size - offset)
        const kind = rand() % 3
        if (kind === 0) await device.write(offset, new Uint8Array(length).fill(0x5a))
        else if (kind === 1) await device.writeZeroes(offset, length, { unmap: rand() % 2 === 0 })
        else await device.discard(offset, length)
      }
      await device.flush()
    } finally {
      await device.close()
    }
    const reopened = await openChain(new MemoryStorage(storage.bytes(), 'fuzz.qcow2'), { format: 'qcow2', codecs: nodeCodecs, host })
    try {
      await exercise(reopened)
    } finally {
      await reopened.close()
    }
  } catch (e) {
    return judge(e) ?? (e as ImageError).code
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
  test(`fuzz ${name}: ${Math.round(CASES[name]! * SCALE)} mutated images (seed ${SEED})`, { timeout: 300_000 }, async (t) => {
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
      const { bytes, done: mutations } = mutate(rand, image.bytes, target, image.layout.clusterSize)
      const policy = rand() % 4 === 0 ? 'deny' : 'follow'
      const snapshot = snapshots > 0 && rand() % 3 === 0 ? String(1 + (rand() % snapshots)) : undefined
      const where = `QIMG_FUZZ_SEED=${SEED} QIMG_FUZZ_CASE=${name}:${i} (${mutations.join(', ')}; policy ${policy}${snapshot ? `, snapshot ${snapshot}` : ''})`
      const started = process.cpuUsage()
      const outcome = await withTimeout(runCase(bytes, extra, policy, snapshot), CASE_HANG_MS)
      const cpu = process.cpuUsage(started)
      const cpuMs = (cpu.user + cpu.system) / 1000
      if (outcome === 'timeout') {
        failures.push(`${where}: did not settle in ${CASE_HANG_MS} ms`)
        break // its work may still be running: later cases would not be measured fairly
      }
      if (typeof outcome !== 'string') failures.push(`${where}: ${(outcome.bug as Error).stack ?? String(outcome.bug)}`)
      else outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      if (cpuMs > CASE_CPU_MS) failures.push(`${where}: took ${Math.round(cpuMs)} ms of CPU time`)
      if (i % 500 === 0) {
        const rss = process.memoryUsage().rss
        if (rss - baseline > RSS_GROWTH_CAP) failures.push(`${where}: resident memory grew by ${Math.round((rss - baseline) / 2 ** 20)} MiB`)
      }
    }
    t.diagnostic(`outcomes: ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    if (failures.length > 0) assert.fail(`seed ${SEED}: ${failures.length} bad outcome(s):\n${failures.join('\n\n')}`)
  })
})

test(`fuzz writes: ${Math.round(WRITE_CASES * SCALE)} mutated images opened for writing (seed ${SEED})`, { timeout: 300_000 }, async (t) => {
  const failures: string[] = []
  const outcomes = new Map<string, number>()
  const names = Object.keys(BASES)
  const bases = names.map((name) => {
    const image = BASES[name]!()
    const extra: Record<string, Uint8Array> = { 'base.qcow2': backingBytes }
    if (image.dataFile) extra['disk.raw'] = image.dataFile.slice()
    return { image, target: targetsOf(image), extra }
  })
  const total = Math.round(WRITE_CASES * SCALE)
  for (let i = 0; i < total && failures.length < 5; i++) {
    if (ONLY !== undefined && ONLY !== `writes:${i}`) continue
    const rand = mulberry32((SEED ^ 0x7772_6974 ^ Math.imul(i + 1, 0x85eb_ca6b)) >>> 0)
    const base = bases[i % bases.length]!
    const { bytes, done: mutations } = mutate(rand, base.image.bytes, base.target, base.image.layout.clusterSize)
    const where = `QIMG_FUZZ_SEED=${SEED} QIMG_FUZZ_CASE=writes:${i} (${names[i % names.length]}: ${mutations.join(', ')})`
    const started = process.cpuUsage()
    const outcome = await withTimeout(runWriteCase(rand, bytes, base.extra, base.image.layout.clusterSize), CASE_HANG_MS)
    const cpu = process.cpuUsage(started)
    if (outcome === 'timeout') {
      failures.push(`${where}: did not settle in ${CASE_HANG_MS} ms`)
      break
    }
    if (typeof outcome !== 'string') failures.push(`${where}: ${(outcome.bug as Error).stack ?? String(outcome.bug)}`)
    else outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    if ((cpu.user + cpu.system) / 1000 > CASE_CPU_MS) failures.push(`${where}: took ${Math.round((cpu.user + cpu.system) / 1000)} ms of CPU time`)
  }
  const rss = process.memoryUsage().rss
  if (rss - baseline > RSS_GROWTH_CAP) failures.push(`resident memory grew by ${Math.round((rss - baseline) / 2 ** 20)} MiB`)
  t.diagnostic(`outcomes: ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`)
  if (failures.length > 0) assert.fail(`seed ${SEED}: ${failures.length} bad outcome(s):\n${failures.join('\n\n')}`)
})
