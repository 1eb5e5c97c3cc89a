// Seeded fuzzing of VMDK sparse metadata: header fields set to boundary and random values,
// grain directory and grain table entries retargeted, descriptor and header bytes flipped;
// likewise the COWD (vmfsSparse) and seSparse extents of a descriptor, built from QEMU's layouts.
// Every open, read, block-status, check and write must succeed or reject with an ImageError
// naming the file, in bounded time and memory.
// Reproduce: QIMG_FUZZ_SEED=<seed> node --test dist/test/vmdk/fuzz.test.js
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'
import { vmdkModule } from '../../src/vmdk/module.js'
import { mulberry32 } from '../helpers/prng.js'
import { boundedStorage, judge, walkDevice } from '../helpers/fuzz-run.js'
import { buildCowd, buildSeSparse, extentDescriptor, type GrainSpec } from './build-extents.js'
import { createVmdk, MemoryFiles, openVmdk, pokeLE } from './vmdk-helpers.js'

const SEED = Number(process.env['QIMG_FUZZ_SEED'] ?? 0x7d3c_11) >>> 0
const CASES = 500 * Number(process.env['QIMG_FUZZ_SCALE'] ?? 1)
const MiB = 1024 * 1024
const NAME = 'fuzz.vmdk'
/** Memory storage must not grow without bound: a write this far is refused as a full disk. */
const WRITE_LIMIT = 64 * MiB


/** Header fields: [offset, width]. */
const FIELDS: [number, 2 | 4 | 8][] = [[4, 4], [8, 4], [12, 8], [20, 8], [28, 8], [36, 8], [44, 4], [48, 8], [56, 8], [64, 8], [77, 2]]
const BOUNDARY = [0, 1, 2, 3, 4, 127, 128, 129, 511, 512, 513, 0x200000, 0x200001, 0x7fffffff, 0xfffffffe, 0xffffffff]

async function baseImage(options: Record<string, string>): Promise<Uint8Array> {
  const files = new MemoryFiles()
  await createVmdk(files, NAME, 3 * MiB, options)
  const device = await openVmdk(files, NAME, { writable: true })
  await device.write(0, new Uint8Array(65536).fill(7))
  await device.write(2 * MiB, new Uint8Array(65536).fill(9))
  await device.close()
  return files.bytes(NAME).slice()
}

function mutate(rand: () => number, bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const gdSector = Number(view.getBigUint64(56, true) & 0xffffn)
  const n = 1 + (rand() % 3)
  for (let i = 0; i < n; i++) {
    const kind = rand() % 5
    if (kind === 0) {
      const [offset, width] = FIELDS[rand() % FIELDS.length]!
      const value = rand() % 2 ? BOUNDARY[rand() % BOUNDARY.length]! : rand()
      pokeLE(bytes, offset, width === 8 && rand() % 2 ? BigInt(value) * BigInt(rand() % 2 ? 1 : 2 ** 20) : width === 2 ? value & 0xffff : value, width)
    } else if (kind === 1 && gdSector * 512 + 16 < bytes.length) {
      pokeLE(bytes, gdSector * 512 + 4 * (rand() % 4), rand() % 2 ? rand() % 200 : BOUNDARY[rand() % BOUNDARY.length]!, 4)
    } else if (kind === 2) {
      // A grain table entry (the tables follow the directory).
      const at = (gdSector + 1) * 512 + 4 * (rand() % 48)
      if (at + 4 <= bytes.length) pokeLE(bytes, at, rand() % 2 ? rand() % 400 : BOUNDARY[rand() % BOUNDARY.length]!, 4)
    } else if (kind === 3) {
      bytes[0x200 + (rand() % 400)] = rand() & 0xff // the descriptor
    } else {
      bytes[rand() % Math.min(bytes.length, 128 * 512 + 200)] = rand() & 0xff
    }
  }
}


async function exercise(rand: () => number, bytes: Uint8Array): Promise<unknown> {
  try {
    const device = await openChain(boundedStorage(bytes.slice(), NAME, WRITE_LIMIT), { format: 'vmdk', writable: true, codecs: nodeCodecs, compressors: nodeCompressors, fileReferences: 'deny' })
    await walkDevice(device, rand, 65536)
    await device.close()
  } catch (e) {
    const bug = judge(e, NAME)
    if (bug) return bug
  }
  try {
    await vmdkModule.check!(new MemoryStorage(bytes, NAME), { report: () => {} })
  } catch (e) {
    const bug = judge(e, NAME)
    if (bug) return bug
  }
  return undefined
}

test(`vmdk metadata fuzzing (seed ${SEED}, ${CASES} cases)`, async () => {
  const bases = [await baseImage({}), await baseImage({ zeroed_grain: 'on' }), await baseImage({ subformat: 'streamOptimized' })]
  const rand = mulberry32(SEED)
  for (let i = 0; i < CASES; i++) {
    const bytes = bases[i % bases.length]!.slice()
    mutate(rand, bytes)
    const bug = await exercise(rand, bytes)
    if (bug) assert.fail(`case ${i} (seed ${SEED}): ${bug instanceof Error ? bug.stack : String(bug)}`)
  }
})

/** A descriptor and its extent file, the extent's header, directory and tables mutated. */
interface ExtentBase { type: string; createType: string; bytes: Uint8Array; fields: [number, 4 | 8][]; tables: number[]; writable: boolean }

function extentBases(): ExtentBase[] {
  const grain = (n: number, v: number) => new Uint8Array(n).fill(v)
  const cowd = buildCowd({ capacitySectors: 3 * 4096 * 2, granularity: 2, grains: new Map([[0, grain(1024, 1)], [4100, grain(1024, 2)], [9000, grain(1024, 3)]]) })
  const se = buildSeSparse({ capacitySectors: 80000, grains: new Map<number, GrainSpec>([[0, grain(4096, 1)], [2, 'zero'], [4097, grain(4096, 2)], [9000, 'unmapped']]) })
  return [
    { type: 'VMFSSPARSE', createType: 'vmfsSparse', bytes: cowd.bytes, fields: [4, 8, 12, 16, 20, 24, 28].map((o) => [o, 4]), tables: [cowd.directoryAt, cowd.tablesAt, cowd.tablesAt + 16384], writable: true },
    { type: 'SESPARSE', createType: 'seSparse', bytes: se.bytes, fields: [0, 8, 16, 24, 32, 40, 80, 128, 136, 144, 192, 512, 536].map((o) => [o, 8]), tables: [se.directoryAt, se.tablesAt, se.tablesAt + 32768], writable: false },
  ]
}

function mutateExtent(rand: () => number, base: ExtentBase, bytes: Uint8Array): void {
  for (let i = 0, n = 1 + (rand() % 3); i < n; i++) {
    const kind = rand() % 3
    if (kind === 0) {
      const [offset, width] = base.fields[rand() % base.fields.length]!
      const value = rand() % 2 ? BOUNDARY[rand() % BOUNDARY.length]! : rand()
      pokeLE(bytes, offset, width === 8 && rand() % 2 ? BigInt(value) << BigInt(rand() % 40) : value, width)
    } else if (kind === 1) {
      const width = base.type === 'SESPARSE' ? 8 : 4
      const at = base.tables[rand() % base.tables.length]! + width * (rand() % 8)
      const value = rand() % 2 ? rand() % 300 : BOUNDARY[rand() % BOUNDARY.length]!
      if (at + width <= bytes.length) pokeLE(bytes, at, width === 8 ? BigInt(value) | (BigInt(rand() % 6) << 60n) : value, width)
    } else {
      bytes[rand() % bytes.length] = rand() & 0xff
    }
  }
}

test(`vmdk COWD and seSparse extent fuzzing (seed ${SEED}, ${CASES} cases)`, async () => {
  const bases = extentBases()
  const rand = mulberry32(SEED ^ 0x5e5e)
  const extent = 'fz-extent.vmdk'
  for (let i = 0; i < CASES; i++) {
    const base = bases[i % bases.length]!
    const bytes = base.bytes.slice()
    mutateExtent(rand, base, bytes)
    const files = new MemoryFiles()
    files.put('fz.vmdk', extentDescriptor(base.createType, [`RW 16 ${base.type} "${extent}"`]))
    files.put(extent, bytes)
    try {
      const device = await openVmdk(files, 'fz.vmdk', { writable: base.writable })
      // A read-only device refuses the walk's writes, after its block status and reads.
      await walkDevice(device, rand, 4096)
      await device.close()
    } catch (e) {
      const bug = judge(e, base.writable ? extent : 'fz')
      if (bug) assert.fail(`case ${i} (seed ${SEED}): ${bug instanceof Error ? bug.stack : String(bug)}`)
    }
    try {
      await vmdkModule.check!(files.storage('fz.vmdk'), { report: () => {}, openReferenced: async (name) => files.storage(name) })
    } catch (e) {
      const bug = judge(e, 'fz')
      if (bug) assert.fail(`case ${i} (seed ${SEED}) check: ${bug instanceof Error ? bug.stack : String(bug)}`)
    }
  }
})
