// Power loss after every write, through the generic write path: a seeded stream of writes,
// zero writes and discards (the crash test's operations) goes to an image over a journaling
// storage; then the file is rebuilt as a crash after each recorded change would leave it, in
// order and (qcow2, whose flushes order its metadata) with the changes since the last flush
// kept or lost at random. Each rebuilt image must open and read every operation that completed
// a flush intact (a byte a later operation touched may hold that operation's value); a qcow2
// image must pass qimg's check with leaks at most, and qemu-img check on a sample of points.
// Partial writes into fresh qcow2 clusters (no copy-on-write of zeros) are among them.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { checkQcow2 } from '../../src/qcow2/check.js'
import { memoryHost } from '../helpers/memory-host.js'
import { needTools, run, tempDir } from '../helpers/oracle.js'
import { prng } from '../helpers/prng.js'
import { KiB, MiB, create, writePatternedRaw } from '../oracle/images.js'
import { JournalStorage, applyChange, lastFlushBefore, replay } from './journal.js'
import { operations, type Op } from './writer-process.js'

const dir = tempDir('qimg-every-write-')
after(() => dir.cleanup())

interface Config {
  name: string
  format: 'qcow2' | 'vdi' | 'qcow' | 'vhdx'
  options: Record<string, string | number>
  /** Guest bytes per unit the operations are aligned to. */
  unitSize: number
  size: number
  /** Over a raw backing file of patterned bytes (copy-on-write from the chain). */
  backing?: boolean
  /** The backing file's length when shorter than the image (past it the guest reads zeros). */
  backingSize?: number
  /** The storage zeroes ranges without writing them (a file's fallocate ZERO_RANGE). */
  zeroes?: boolean
  /**
   * Partial writes into fresh clusters skip the copy-on-write of zeros: the journal must show
   * it (a zeroed range, or the one zero byte that extends the file over a new cluster).
   */
  fresh?: boolean
  /** Host bytes the first refcount block covers: the run must grow the file past them. */
  firstRefblockCovers?: number
  /** Whether a discard makes the range read zeros (VDI and QCOW ignore discards). */
  discardZeroes: boolean
  ops: number
}

const CONFIGS: Config[] = [
  { name: 'qcow2, 64 KiB clusters', format: 'qcow2', options: {}, unitSize: 64 * KiB, size: MiB, discardZeroes: true, ops: 30 },
  { name: 'qcow2, 4 KiB clusters over a backing file', format: 'qcow2', options: { cluster_size: 4 * KiB }, unitSize: 4 * KiB, size: MiB, backing: true, discardZeroes: true, ops: 30 },
  { name: 'qcow2 v2, 512-byte clusters', format: 'qcow2', options: { cluster_size: 512, compat: '0.10' }, unitSize: 512, size: MiB / 4, discardZeroes: true, ops: 20 },
  { name: 'qcow2 extended_l2 over a backing file', format: 'qcow2', options: { cluster_size: 32 * KiB, extended_l2: 'on' }, unitSize: 32 * KiB, size: MiB, backing: true, discardZeroes: true, ops: 30 },
  { name: 'vdi, 1 MiB blocks', format: 'vdi', options: {}, unitSize: 64 * KiB, size: 4 * MiB, discardZeroes: false, ops: 20 },
  // VHDX: every BAT update goes through the log; a crash image with a dirty log is replayed on open.
  { name: 'vhdx, 1 MiB blocks', format: 'vhdx', options: { block_size: MiB }, unitSize: 64 * KiB, size: 4 * MiB, discardZeroes: false, ops: 16 },
  { name: 'qcow, 4 KiB clusters over a backing file', format: 'qcow', options: {}, unitSize: 4 * KiB, size: MiB / 4, backing: true, discardZeroes: false, ops: 16 },
  // Partial writes into fresh clusters (QEMU's handle_alloc_space): only the guest's bytes are
  // written, the rest of the cluster zeroed by the storage or left a hole the file covers.
  { name: 'qcow2, 64 KiB clusters, fresh clusters zeroed by the storage', format: 'qcow2', options: {}, unitSize: 64 * KiB, size: MiB, zeroes: true, fresh: true, discardZeroes: true, ops: 30 },
  { name: 'qcow2, 512-byte clusters, 64-bit refcounts: refcount blocks allocated between fresh clusters', format: 'qcow2', options: { cluster_size: 512, refcount_bits: 64 }, unitSize: 512, size: MiB / 4, fresh: true, firstRefblockCovers: 64 * 512, discardZeroes: true, ops: 24 },
  { name: 'qcow2, 4 KiB clusters over a backing file half as long (fresh clusters past its end)', format: 'qcow2', options: { cluster_size: 4 * KiB }, unitSize: 4 * KiB, size: MiB, backing: true, backingSize: MiB / 2, fresh: true, discardZeroes: true, ops: 30 },
]

/** What a completed operation leaves in the guest. */
function apply(content: Uint8Array, op: Op, config: Config): void {
  if (op.kind === 'write') content.fill(op.pattern, op.offset, op.offset + op.length)
  else if (op.kind === 'zero' || config.discardZeroes) content.fill(0, op.offset, op.offset + op.length)
}

/** A byte's possible values from operations that may or may not have reached the disk. */
function mayHold(ops: readonly Op[], byte: number, value: number, config: Config): boolean {
  return ops.some((op) => byte >= op.offset && byte < op.offset + op.length &&
    (op.kind === 'write' ? value === op.pattern : value === 0 && (op.kind === 'zero' || config.discardZeroes)))
}

/**
 * VDI stores its allocation count in the header and the block map apart, with no flush between
 * (QEMU's vdi_co_pwritev writes the header, then the map sector): a crash between the two
 * leaves qemu-img's one error "allocated blocks mismatch", which check -r repairs; the block
 * map itself only ever points at written blocks.
 */
function vdiHeaderLag(text: string): boolean {
  const errors = text.split('\n').filter((l) => l.startsWith('ERROR'))
  return errors.length === 1 && /^ERROR: allocated blocks mismatch, is \d+, should be \d+$/.test(errors[0]!)
}

async function openTop(bytes: Uint8Array, config: Config, base: { name: string; bytes: Uint8Array } | undefined, writable: boolean, storage = new MemoryStorage(bytes, 'img')) {
  return openChain(storage, { format: config.format, writable, host: memoryHost(base ? { [base.name]: base.bytes } : {}) })
}

describe('power loss after every write', { concurrency: 2 }, () => {
  for (const [n, config] of CONFIGS.entries()) {
    it(config.name, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const SIZE = config.size
      const sub = `c${n}`
      const path = dir.file(`${sub}.img`)
      let base: { name: string; bytes: Uint8Array } | undefined
      if (config.backing) {
        writePatternedRaw(dir.file(`${sub}-base.raw`), config.backingSize ?? SIZE, 5 + n)
        base = { name: `${sub}-base.raw`, bytes: new Uint8Array(readFileSync(dir.file(`${sub}-base.raw`))) }
        await create(dir.path, `${sub}.img`, SIZE, config.options, { file: `${sub}-base.raw`, format: 'raw' }, config.format)
      } else {
        await create(dir.path, `${sub}.img`, SIZE, config.options, undefined, config.format)
      }
      const initial = new Uint8Array(readFileSync(path))
      const storage = new JournalStorage(initial, 'img', { zeroes: config.zeroes === true })
      const device = await openTop(initial, config, base, true, storage as unknown as MemoryStorage)
      const start = await device.read(0, SIZE)
      // Run the operations; after each completed flush, note how many changes made it durable.
      const ops: Op[] = []
      const durableAt: number[] = []
      let i = 0
      for (const op of operations(1000 + n, SIZE, config.unitSize)) {
        if (i++ === config.ops) break
        ops.push(op)
        if (op.kind === 'write') await device.write(op.offset, new Uint8Array(op.length).fill(op.pattern))
        else if (op.kind === 'zero') await device.writeZeroes(op.offset, op.length)
        else await device.discard(op.offset, op.length)
        if (op.flushAfter || i === config.ops) {
          await device.flush()
          durableAt.push(storage.journal.length)
        } else durableAt.push(Infinity)
      }
      const journal = storage.journal
      assert.ok(journal.length > config.ops, `${config.name}: only ${journal.length} changes recorded`)
      if (config.fresh) {
        const skipped = journal.filter((c) => c.kind === 'zero' || (c.kind === 'write' && c.bytes.length === 1)).length
        assert.ok(skipped > 0, `${config.name}: no partial write into a fresh cluster skipped its copy-on-write`)
      }
      if (config.firstRefblockCovers) {
        const end = Math.max(...journal.map((c) => (c.kind === 'write' ? c.offset + c.bytes.length : 0)))
        assert.ok(end > config.firstRefblockCovers, `${config.name}: the file never grew past the first refcount block's clusters (${end} bytes)`)
      }
      const random = prng(77 + n)
      const reorder = config.format === 'qcow2' || config.format === 'vhdx'
      // The file as the changes so far left it (in order), and as it was at the last flush.
      const inOrder = new MemoryStorage(initial.slice(), 'img')
      let atFlush = initial.slice()
      for (let point = 0; point <= journal.length; point++) {
        if (point > 0) {
          await applyChange(inOrder, journal[point - 1]!)
          if (journal[point - 1]!.kind === 'flush') atFlush = inOrder.bytes().slice()
        }
        const flushIndex = lastFlushBefore(journal, point)
        const variants: { what: string; bytes: () => Promise<Uint8Array>; durable: number }[] = [{ what: 'in order', bytes: async () => inOrder.bytes().slice(), durable: point }]
        if (reorder && point - flushIndex > 2) {
          const lost = new Set<number>()
          for (let c = flushIndex + 1; c < point; c++) if (random() < 0.5) lost.add(c)
          variants.push({ what: `reordered (lost ${[...lost].join(',')})`, bytes: () => replay(atFlush, journal, flushIndex + 1, point, (c) => !lost.has(c)), durable: flushIndex + 1 })
        }
        for (const v of variants) {
          const what = `${config.name}: crash after change ${point} of ${journal.length}, ${v.what}`
          const bytes = await v.bytes()
          const expected = start.slice()
          const pending: Op[] = []
          for (const [k, op] of ops.entries()) {
            if (durableAt[k]! <= v.durable) apply(expected, op, config)
            else pending.push(op)
          }
          if (config.format === 'qcow2') {
            const report = await checkQcow2(new MemoryStorage(bytes.slice(), 'img'))
            assert.ok(report.failed === undefined && report.corruptions === 0 && report.checkErrors === 0, `${what}: qimg check: ${JSON.stringify(report)}`)
          }
          if (point % 16 === 0 || point === journal.length) {
            const file = dir.file(`${sub}-crash.img`)
            writeFileSync(file, bytes)
            if (config.format !== 'qcow') {
              // A VHDX whose log must be replayed opens only writable (check -r all replays it).
              const repair = config.format === 'vhdx' ? ['-r', 'all'] : []
              const r = await run('qemu-img', ['check', ...repair, '-f', config.format, file], { cwd: dir.path })
              assert.ok(r.code === 0 || r.code === 3 || (config.format === 'vdi' && vdiHeaderLag(r.stdout + r.stderr)), `${what}: qemu-img check (exit ${r.code}):\n${r.stdout}${r.stderr}`)
            }
          }
          const reopened = await openTop(bytes.slice(), config, base, config.format === 'vhdx')
          const actual = await reopened.read(0, SIZE)
          await reopened.close()
          for (let b = 0; b < SIZE; b++) {
            if (actual[b] !== expected[b] && !mayHold(pending, b, actual[b]!, config)) {
              assert.fail(`${what}: guest byte ${b} is ${actual[b]}, expected ${expected[b]} (${ops.length - pending.length} operations durable)`)
            }
          }
        }
      }
      await device.close()
    })
  }
})
