// Concurrency of the write engine: many callers writing, zeroing, discarding, flushing and
// reading one image at once. Batches of ops on disjoint ranges run together (so the final state
// is the model's, whatever the interleaving); readers running alongside must see, byte for byte,
// either the state before the batch or the state after it, never a half-updated mapping. Two
// writes into one unallocated cluster must allocate it once.
//
// Reproduce: QIMG_MODEL_SEED=<n> node --test dist/test/model/concurrency.test.js
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { BlockDevice } from '../../src/format/device.js'
import { createQcow2 } from '../../src/node/typed-create.js'
import { openImage } from '../../src/node/open.js'
import type { Qcow2CreateOptions } from '../../src/qcow2/create.js'
import { needTools, run } from '../helpers/oracle.js'
import { DiskModel, describeOp, firstDifference, scratchDir, type Op } from './model.js'
import { Prng } from './prng.js'

const KiB = 1024
const MiB = 1024 * KiB
const SEED = process.env['QIMG_MODEL_SEED'] === undefined ? undefined : Number(process.env['QIMG_MODEL_SEED']) >>> 0

const root = scratchDir('qimg-model-conc-')
after(() => root.cleanup())

function dataOf(o: Extract<Op, { op: 'write' }>): Uint8Array {
  return new Prng(o.seed).bytes(o.length)
}

async function applyOp(device: BlockDevice, o: Op): Promise<void> {
  switch (o.op) {
    case 'write': await device.write(o.offset, dataOf(o)); break
    case 'zero': await device.writeZeroes(o.offset, o.length, { unmap: o.unmap }); break
    case 'discard': await device.discard(o.offset, o.length); break
    case 'flush': await device.flush(); break
  }
}

async function qemuCheck(path: string, what: string): Promise<Record<string, number>> {
  const r = await run('qemu-img', ['check', '--output=json', '-f', 'qcow2', path], { cwd: dirname(path) })
  const detail = `${r.stdout.trim()} ${r.stderr.split('\n').slice(0, 12).join('\n')}`
  assert.equal(r.code, 0, `${what}: qemu-img check exited ${r.code}: ${detail}`)
  const json = JSON.parse(r.stdout) as Record<string, number>
  for (const key of ['corruptions', 'leaks', 'check-errors']) assert.ok(!json[key], `${what}: qemu-img check reports ${key}: ${detail}`)
  return json
}

async function qemuCompare(path: string, model: DiskModel, what: string): Promise<void> {
  const raw = `${path}.model.raw`
  writeFileSync(raw, model.bytes)
  const r = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', path, raw], { cwd: dirname(path) })
  assert.equal(r.code, 0, `${what}: qemu-img compare with the model: ${r.stdout.trim()} ${r.stderr.trim()}`)
}

async function verifyAll(device: BlockDevice, model: DiskModel, what: string): Promise<void> {
  const got = await device.read(0, model.size)
  const at = firstDifference(got, model.bytes)
  if (at >= 0) assert.fail(`${what}: guest byte ${at} (0x${at.toString(16)}) reads ${got[at]}, model has ${model.bytes[at]}`)
}

/** Image under test plus its model. */
interface Target {
  name: string
  create: Omit<Qcow2CreateOptions, 'size' | 'backingFile' | 'backingFormat'>
  size: number
  /** A raw backing file of patterned data covering the whole disk. */
  backing?: boolean
  l2CacheSize?: number
}

async function makeTarget(t: Target, seed: number): Promise<{ path: string; model: DiskModel; cs: number; sub: number }> {
  const dir = mkdtempSync(join(root.path, 'case-'))
  const path = join(dir, 'img')
  let backing: Uint8Array | undefined
  if (t.backing) {
    backing = new Prng(seed ^ 0xba5e).bytes(t.size)
    writeFileSync(join(dir, 'base.raw'), backing)
  }
  await createQcow2(path, { ...t.create, size: t.size, backingFile: t.backing ? 'base.raw' : undefined, backingFormat: t.backing ? 'raw' : undefined })
  const cs = t.create.clusterSize ?? 64 * KiB
  const version = t.create.compat === '0.10' ? 2 : 3
  return { path, model: new DiskModel({ kind: 'qcow2', version, clusterSize: cs }, t.size, { backing }), cs, sub: t.create.extendedL2 ? cs / 32 : cs }
}

/**
 * `count` ops on pairwise disjoint ranges (several may share a cluster or an L2 table), so
 * their combined effect does not depend on the order they run in.
 */
function disjointBatch(rng: Prng, size: number, cs: number, sub: number, count: number): Op[] {
  const taken: [number, number][] = []
  const ops: Op[] = []
  for (let tries = 0; ops.length < count && tries < count * 20; tries++) {
    const unit = rng.pick([1, 512, sub, cs])
    const offset = Math.floor(rng.int(size) / unit) * unit
    const length = Math.min(size - offset, Math.max(1, rng.pick([rng.range(1, sub), rng.range(1, 2 * cs), cs, rng.range(cs, 4 * cs)])))
    if (taken.some(([a, b]) => offset < b && a < offset + length)) continue
    taken.push([offset, offset + length])
    switch (rng.weighted({ write: 6, zero: 2, unmap: 1, discard: 2 })) {
      case 'write': ops.push({ op: 'write', offset, length, seed: rng.int(2 ** 32) }); break
      case 'zero': ops.push({ op: 'zero', offset, length, unmap: false }); break
      case 'unmap': ops.push({ op: 'zero', offset, length, unmap: true }); break
      default: ops.push({ op: 'discard', offset, length })
    }
  }
  return ops
}

const TARGETS: Target[] = [
  { name: 'v3 cluster 65536', create: {}, size: 4 * MiB },
  { name: 'v3 cluster 512', create: { clusterSize: 512 }, size: 1 * MiB },
  { name: 'v3 cluster 512, 2-table L2 cache', create: { clusterSize: 512 }, size: 1 * MiB, l2CacheSize: 1024 },
  { name: 'v2 cluster 4096 over raw backing', create: { compat: '0.10', clusterSize: 4 * KiB }, size: 2 * MiB, backing: true },
  { name: 'extended_l2 cluster 16384 over raw backing', create: { clusterSize: 16 * KiB, extendedL2: true }, size: 2 * MiB, backing: true },
  { name: 'extended_l2 cluster 16384, 2-table L2 cache', create: { clusterSize: 16 * KiB, extendedL2: true }, size: 4 * MiB, backing: true, l2CacheSize: 32 * KiB },
  { name: 'lazy_refcounts refcount_bits 1 cluster 1024', create: { clusterSize: KiB, lazyRefcounts: true, refcountBits: 1 }, size: 1 * MiB },
  { name: 'data_file cluster 4096', create: { clusterSize: 4 * KiB, dataFile: 'img.data' }, size: 2 * MiB },
]

describe('concurrent callers', { concurrency: 2 }, () => {
  for (const target of TARGETS) {
    it(`disjoint batches with concurrent readers: ${target.name}`, { timeout: 120_000 }, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const seed = SEED ?? 0xc0c0 + TARGETS.indexOf(target)
      const tag = `[${target.name} seed=${seed}]`
      const rng = new Prng(seed)
      const { path, model, cs, sub } = await makeTarget(target, seed)
      let device = await openImage(path, { writable: true, format: 'qcow2', l2CacheSize: target.l2CacheSize })
      try {
        for (let batch = 0; batch < 12; batch++) {
          const ops = disjointBatch(rng, model.size, cs, sub, 24)
          const before = model.bytes.slice()
          for (const o of ops) model.apply(o, dataOf)
          const what = `${tag} batch ${batch}: ${ops.map(describeOp).join('; ')}`
          // Readers run while the batch does: each byte read must be its before or after value.
          let running = true
          const readers = Array.from({ length: 4 }, async (_, r) => {
            const rr = new Prng(seed ^ (batch * 16 + r))
            let reads = 0
            while (running || reads < 2) {
              const from = rr.int(model.size)
              const length = Math.min(model.size - from, rr.range(1, 4 * cs))
              const got = await device.read(from, length)
              reads++
              // Reads of unallocated ranges finish without I/O: let the writers' I/O run.
              await new Promise((resolve) => setImmediate(resolve))
              for (let i = 0; i < length; i++) {
                const b = got[i]
                if (b !== before[from + i] && b !== model.bytes[from + i]) {
                  assert.fail(`${what}: concurrent read of ${from}+${length} saw byte ${from + i} = ${b}, neither before (${before[from + i]}) nor after (${model.bytes[from + i]})`)
                }
              }
            }
          })
          const flushes = rng.chance(0.5) ? [device.flush()] : []
          try {
            await Promise.all([...ops.map((o) => applyOp(device, o)), ...flushes])
          } finally {
            running = false
            await Promise.all(readers)
          }
          await verifyAll(device, model, `${what}, after the batch`)
          if (batch === 5) {
            await device.close()
            await qemuCheck(path, `${what}, closed mid-way`)
            device = await openImage(path, { writable: true, format: 'qcow2', l2CacheSize: target.l2CacheSize })
          }
        }
      } finally {
        await device.close()
      }
      await qemuCheck(path, tag)
      await qemuCompare(path, model, tag)
    })
  }

  for (const [name, create] of [
    ['cluster 65536', {}],
    ['cluster 512', { clusterSize: 512 }],
    ['extended_l2 cluster 32768', { clusterSize: 32 * KiB, extendedL2: true }],
    ['v2 cluster 4096', { compat: '0.10', clusterSize: 4 * KiB }],
  ] as [string, Target['create']][]) {
    it(`many writes into the same unallocated clusters allocate each once: ${name}`, { timeout: 60_000 }, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const seed = SEED ?? 0xa11c
      const rng = new Prng(seed)
      const { path, model, cs } = await makeTarget({ name, create, size: 2 * MiB }, seed)
      const clusters = 16
      const pieces = 8
      const device = await openImage(path, { writable: true, format: 'qcow2' })
      const ops: Op[] = []
      try {
        // Clusters 0, 2, 4, …: every piece of each written by a separate concurrent caller.
        for (let c = 0; c < clusters; c++) {
          for (let p = 0; p < pieces; p++) {
            const at = 2 * c * cs + (p * cs) / pieces
            ops.push({ op: 'write', offset: at + rng.int(16), length: cs / pieces - 16, seed: rng.int(2 ** 32) })
          }
        }
        for (let i = ops.length - 1; i > 0; i--) {
          const j = rng.int(i + 1)
          ;[ops[i], ops[j]] = [ops[j]!, ops[i]!]
        }
        await Promise.all(ops.map((o) => applyOp(device, o)))
        for (const o of ops) model.apply(o, dataOf)
        await verifyAll(device, model, `[${name} seed=${seed}]`)
      } finally {
        await device.close()
      }
      const check = await qemuCheck(path, `[${name} seed=${seed}]`)
      assert.equal(check['allocated-clusters'], clusters, `[${name} seed=${seed}] allocated clusters`)
      // Header, refcount table, refcount block, L1, one L2 table, then exactly one cluster each.
      assert.equal(check['image-end-offset'], (5 + clusters) * cs, `[${name} seed=${seed}] image end: a cluster was allocated twice`)
      await qemuCompare(path, model, `[${name} seed=${seed}]`)
    })
  }

  it('overlapping concurrent writes leave every byte from one writer and a consistent image', { timeout: 60_000 }, async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const seed = SEED ?? 0x0e71
    const rng = new Prng(seed)
    const { path, model, cs } = await makeTarget({ name: 'overlap', create: { clusterSize: 4 * KiB }, size: 1 * MiB, backing: true }, seed)
    const device = await openImage(path, { writable: true, format: 'qcow2' })
    const ops: Extract<Op, { op: 'write' }>[] = []
    let got: Uint8Array
    try {
      // Every write fills its range with one byte value, unique per writer (1..64).
      for (let i = 0; i < 64; i++) {
        const offset = rng.int(64) * 512 + rng.int(3 * cs)
        ops.push({ op: 'write', offset, length: rng.range(1, 6 * cs), seed: i + 1 })
      }
      await Promise.all([...ops.map((o) => device.write(o.offset, new Uint8Array(o.length).fill(o.seed))), device.flush(), device.discard(0, 8 * cs)])
      got = await device.read(0, model.size)
    } finally {
      await device.close()
    }
    // Each byte: from a writer covering it; else zero inside the discarded clusters (v3), else the backing file.
    for (let at = 0; at < model.size; at++) {
      const b = got[at]!
      const covered = ops.filter((o) => at >= o.offset && at < o.offset + o.length)
      const inDiscard = at < 8 * cs
      const ok = covered.some((o) => o.seed === b) || (inDiscard ? b === 0 : covered.length === 0 && b === model.bytes[at])
      if (!ok) assert.fail(`[overlap seed=${seed}] byte ${at} = ${b}: not from a writer covering it (${covered.map((o) => o.seed).join(',')}), nor ${inDiscard ? 'discarded' : 'the backing file'}`)
    }
    await qemuCheck(path, `[overlap seed=${seed}]`)
    // The image must read the same to QEMU as to qimg.
    model.write(0, got)
    await qemuCompare(path, model, `[overlap seed=${seed}]`)
  })
})
