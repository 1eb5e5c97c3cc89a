// Seeded fuzzing of VHDX metadata: header, region table, metadata table and item fields set to
// boundary and random values (checksums recomputed half the time, so the checks behind them are
// reached), BAT entries retargeted and given every state, log bytes of a dirty image flipped,
// for dynamic, fixed and differencing disks. Every open, read, block status and write must
// succeed or reject with an ImageError naming the file, in bounded time and memory.
// Reproduce: QIMG_FUZZ_SEED=<seed> node --test dist/test/vhdx/fuzz.test.js
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openChain } from '../../src/format/chain.js'
import { mulberry32 } from '../helpers/prng.js'
import { boundedStorage, judge, walkDevice } from '../helpers/fuzz-run.js'
import { memoryHost } from '../helpers/memory-host.js'
import { JournalStorage, replay } from '../crash/journal.js'
import type { MemoryStorage } from '../../src/io/memory.js'
import { MiB, buildDifferencingVhdx, newVhdx, resumVhdx } from './vhdx-helpers.js'

const SEED = Number(process.env['QIMG_FUZZ_SEED'] ?? 0x5eed_0d8) >>> 0
const CASES = 400 * Number(process.env['QIMG_FUZZ_SCALE'] ?? 1)
const NAME = '/fuzz/fuzz.vhdx'
const WRITE_LIMIT = 64 * MiB
const BOUNDARY = [0, 1, 2, 7, 511, 512, 4096, 65536, MiB, 2 * MiB, 3 * MiB, 256 * MiB, 0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff]

const u64 = (b: Uint8Array, at: number) => Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true))

/** A dirty image: a crash right after the log entry of a block allocation was flushed. */
async function dirty(): Promise<Uint8Array> {
  const base = (await newVhdx(4 * MiB, { block_size: '1M' }, NAME)).bytes().slice()
  const storage = new JournalStorage(base, NAME)
  const device = await openChain(storage as unknown as MemoryStorage, { format: 'vhdx', writable: true })
  await device.write(MiB, new Uint8Array(8192).fill(3))
  const entry = storage.journal.findIndex((c) => c.kind === 'write' && c.offset === MiB && c.bytes[0] === 0x6c)
  return replay(base, storage.journal, 0, entry + 2, () => true)
}

function poke(bytes: Uint8Array, at: number, width: 2 | 4 | 8, value: number): void {
  if (at + width > bytes.length) return
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (width === 2) v.setUint16(at, value & 0xffff, true)
  else if (width === 4) v.setUint32(at, value >>> 0, true)
  else v.setBigUint64(at, BigInt(Math.floor(value)) * (value < 2 ** 32 ? 1n : 1n), true)
}

function mutate(rand: () => number, bytes: Uint8Array): void {
  const value = () => (rand() % 2 ? BOUNDARY[rand() % BOUNDARY.length]! : rand() >>> 0)
  const batOffset = u64(bytes, 0x30000 + 32)
  const metadataOffset = u64(bytes, 0x30000 + 64)
  for (let i = 0, n = 1 + (rand() % 3); i < n; i++) {
    const kind = rand() % 7
    const header = rand() % 2 ? 0x10000 : 0x20000
    if (kind === 0) poke(bytes, header + [8, 64, 66, 68, 72][rand() % 5]!, ([8, 2, 2, 4, 8] as const)[rand() % 5]!, value())
    else if (kind === 1) poke(bytes, 0x30000 + [8, 16 + 16, 16 + 24, 16 + 28, 48 + 16, 48 + 24, 48 + 28][rand() % 7]!, rand() % 3 === 0 ? 8 : 4, value())
    else if (kind === 2) poke(bytes, metadataOffset + [10, 32 + 16, 32 + 20, 32 + 24, 64 + 16, 64 + 20, 96 + 16][rand() % 7]!, rand() % 4 === 0 ? 2 : 4, value())
    else if (kind === 3) poke(bytes, metadataOffset + 65536 + [0, 4, 8, 32, 36][rand() % 5]!, 4, value())
    else if (kind === 4) poke(bytes, batOffset + 8 * (rand() % 8), 8, (rand() % 2 ? (rand() % 16) * MiB : value() * MiB) + (rand() % 8))
    else if (kind === 5) bytes[MiB + (rand() % 8192)] = rand() & 0xff
    else bytes[(rand() % 0x40000) + 0x10000] = rand() & 0xff
  }
  if (rand() % 2) resumVhdx(bytes)
}

test('fuzzed VHDX metadata: typed errors, bounded time and memory', { timeout: 900_000 }, async () => {
  const size = 4 * MiB
  const parent = (await newVhdx(size, { block_size: '1M' }, '/fuzz/parent.vhdx', [[0, size, 1]])).bytes().slice()
  const diffBase = (await newVhdx(size, { block_size: '1M' }, NAME, [[MiB, MiB, 2], [2 * MiB, MiB, 3]])).bytes().slice()
  const bases = [
    (await newVhdx(5 * MiB, { block_size: '1M' }, NAME, [[MiB - 100, 300, 7], [4 * MiB, 4096, 9]])).bytes().slice(),
    (await newVhdx(3 * MiB, { subformat: 'fixed', block_state_zero: 'off', block_size: '1M' }, NAME)).bytes().slice(),
    buildDifferencingVhdx(diffBase, 'parent.vhdx', 2, [[0, 8], [100, 200]]),
    await dirty(),
  ]
  const rand = mulberry32(SEED)
  for (let c = 0; c < CASES; c++) {
    const bytes = bases[c % bases.length]!.slice()
    mutate(rand, bytes)
    const storage = boundedStorage(bytes, NAME, WRITE_LIMIT)
    try {
      const device = await openChain(storage, { format: 'vhdx', writable: true, host: memoryHost({ '/fuzz/parent.vhdx': parent }) })
      for (let at = 0, steps = 0; at < device.size && steps < 64; steps++) at += (await device.blockStatus(at, device.size - at, 0, true)).length
      await walkDevice(device, rand)
      await device.close()
    } catch (e) {
      const bug = judge(e, NAME)
      if (bug) assert.fail(`seed ${SEED} case ${c}: ${(bug as Error).stack ?? bug}`)
    }
  }
})
