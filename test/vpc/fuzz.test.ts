// Seeded fuzzing of VHD metadata: footer and dynamic header fields set to boundary and random
// values (checksums recomputed half the time, so the checks behind them are reached), BAT entries
// retargeted, bytes of the first sectors flipped, for dynamic, fixed and differencing disks.
// Every open, read, block status and write must succeed or reject with an ImageError naming the
// file, in bounded time and memory. Reproduce: QIMG_FUZZ_SEED=<seed> node --test dist/test/vpc/fuzz.test.js
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openChain } from '../../src/format/chain.js'
import { FOOTER_FIELD } from '../../src/vpc/footer.js'
import { DYNAMIC_FIELD } from '../../src/vpc/dynamic-header.js'
import { mulberry32 } from '../helpers/prng.js'
import { boundedStorage, judge, walkDevice } from '../helpers/fuzz-run.js'
import { memoryHost } from '../helpers/memory-host.js'
import { buildDifferencing, newVpc, pokeBE, resumFooter } from './vpc-helpers.js'

const SEED = Number(process.env['QIMG_FUZZ_SEED'] ?? 0x5eed_0c7) >>> 0
const CASES = 500 * Number(process.env['QIMG_FUZZ_SCALE'] ?? 1)
const MiB = 1024 * 1024
const NAME = '/fuzz/fuzz.vhd'
const WRITE_LIMIT = 64 * MiB

const BOUNDARY = [0, 1, 2, 3, 4, 511, 512, 513, 4096, MiB, 2 * MiB, 0x1fffffff, 0x20000000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]

async function written(options: Record<string, string>): Promise<Uint8Array> {
  const storage = await newVpc(5 * MiB, options, NAME)
  const device = await openChain(storage, { format: 'vpc', writable: true })
  await device.write(MiB - 100, new Uint8Array(300).fill(7))
  await device.write(4 * MiB, new Uint8Array(4096).fill(9))
  return storage.bytes().slice()
}

const FOOTER_FIELDS: [number, 1 | 2 | 4 | 8][] = [
  [FOOTER_FIELD.dataOffset, 8], [FOOTER_FIELD.currentSize, 8], [FOOTER_FIELD.cylinders, 2], [FOOTER_FIELD.heads, 1],
  [FOOTER_FIELD.sectorsPerTrack, 1], [FOOTER_FIELD.diskType, 4], [FOOTER_FIELD.creatorApp, 4],
]
const HEADER_FIELDS: [number, 1 | 2 | 4 | 8][] = [
  [DYNAMIC_FIELD.tableOffset, 8], [DYNAMIC_FIELD.maxTableEntries, 4], [DYNAMIC_FIELD.blockSize, 4],
  [DYNAMIC_FIELD.parentLocators + 8, 4], [DYNAMIC_FIELD.parentLocators + 16, 8], [DYNAMIC_FIELD.parentLocators + 24, 4],
]

function mutate(rand: () => number, bytes: Uint8Array, fixed: boolean): void {
  const footerAt = fixed ? bytes.length - 512 : 0
  const value = (width: number) => (rand() % 2 ? BOUNDARY[rand() % BOUNDARY.length]! : rand()) * (width === 8 && rand() % 2 ? 512 : 1)
  for (let i = 0, n = 1 + (rand() % 3); i < n; i++) {
    const kind = rand() % 4
    if (kind === 0) {
      const [at, width] = FOOTER_FIELDS[rand() % FOOTER_FIELDS.length]!
      pokeBE(bytes, footerAt + at, width, width === 1 ? value(1) & 0xff : width === 2 ? value(2) & 0xffff : width === 4 ? value(4) >>> 0 : BigInt(value(8)))
    } else if (kind === 1 && !fixed) {
      const [at, width] = HEADER_FIELDS[rand() % HEADER_FIELDS.length]!
      pokeBE(bytes, 512 + at, width, width === 4 ? value(4) >>> 0 : BigInt(value(8)))
    } else if (kind === 2 && !fixed) {
      pokeBE(bytes, 1536 + 4 * (rand() % 3), 4, rand() % 2 ? rand() % 0x6000 : BOUNDARY[rand() % BOUNDARY.length]!)
    } else {
      bytes[(rand() % 2048) + (fixed ? bytes.length - 2048 : 0)] = rand() & 0xff
    }
  }
  if (rand() % 2) resumFooter(bytes, footerAt)
}

async function exercise(rand: () => number, bytes: Uint8Array, parent: Uint8Array): Promise<unknown> {
  try {
    const host = memoryHost({ '/fuzz/parent.vhd': parent })
    const device = await openChain(boundedStorage(bytes.slice(), NAME, WRITE_LIMIT), { format: 'vpc', writable: true, host })
    await walkDevice(device, rand)
    await device.close()
  } catch (e) {
    // The child or its parent (both under /fuzz) may be the file named.
    return judge(e, 'fuzz')
  }
  return undefined
}

test(`vpc metadata fuzzing (seed ${SEED}, ${CASES} cases)`, async () => {
  const parent = await written({})
  const differencing = buildDifferencing({
    size: 5 * MiB, parentFooter: parent.subarray(0, 512), parentFile: 'parent.vhd', locators: ['W2ru'],
    runs: [{ sector: 3, count: 5, fill: 1 }, { sector: 5000, count: 9, fill: 2 }], junk: 0xee,
  })
  const bases: [Uint8Array, boolean][] = [[parent, false], [await written({ subformat: 'fixed' }), true], [differencing, false]]
  const rand = mulberry32(SEED)
  for (let i = 0; i < CASES; i++) {
    const [base, fixed] = bases[i % bases.length]!
    const bytes = base.slice()
    mutate(rand, bytes, fixed)
    const bug = await exercise(rand, bytes, parent)
    if (bug) assert.fail(`case ${i} (seed ${SEED}): ${bug instanceof Error ? bug.stack : String(bug)}`)
  }
})
