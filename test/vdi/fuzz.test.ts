// Seeded fuzzing of VDI metadata: header fields set to boundary and random values, block map
// entries retargeted, bytes of the first sectors flipped. Every open, read, block-status, check
// and write must succeed or reject with an ImageError naming the file, in bounded time.
// Reproduce: QIMG_FUZZ_SEED=<seed> node --test dist/test/vdi/fuzz.test.js
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { FIELD } from '../../src/vdi/header.js'
import { vdiModule } from '../../src/vdi/module.js'
import { mulberry32 } from '../helpers/prng.js'
import { boundedStorage, judge, walkDevice } from '../helpers/fuzz-run.js'
import { newVdi, pokeLE } from './vdi-helpers.js'

const SEED = Number(process.env['QIMG_FUZZ_SEED'] ?? 0x5eed_0d1) >>> 0
const CASES = 600 * Number(process.env['QIMG_FUZZ_SCALE'] ?? 1)
const MiB = 1024 * 1024
const NAME = 'fuzz.vdi'
/** Memory storage must not grow without bound: a write this far is refused as a full disk. */
const WRITE_LIMIT = 64 * MiB


const BOUNDARY = [0, 1, 511, 512, 513, MiB - 1, MiB, MiB + 1, 0x1fffff80, 0x1fffff81, 0x3fffffff, 0x7fffffff, 0xfffffffe, 0xffffffff]

async function baseImage(isStatic: boolean): Promise<Uint8Array> {
  const storage = await newVdi(4.5 * MiB, { static: isStatic, name: NAME })
  const device = await openChain(storage, { format: 'vdi', writable: true })
  await device.write(MiB - 100, new Uint8Array(300).fill(7))
  await device.write(3 * MiB, new Uint8Array(4096).fill(9))
  return storage.bytes().slice()
}

function mutate(rand: () => number, bytes: Uint8Array): void {
  const fields: [number, 4 | 8][] = Object.values(FIELD).filter((o) => o < 0x188).map((o) => [o, o === FIELD.diskSize ? 8 : 4])
  const n = 1 + (rand() % 3)
  for (let i = 0; i < n; i++) {
    const kind = rand() % 4
    if (kind === 0) {
      const [offset, width] = fields[rand() % fields.length]!
      const value = rand() % 2 ? BOUNDARY[rand() % BOUNDARY.length]! : rand()
      pokeLE(bytes, offset, width, width === 8 && rand() % 2 ? BigInt(value) * BigInt(MiB) : value)
    } else if (kind === 1) {
      pokeLE(bytes, 0x200 + 4 * (rand() % 8), 4, rand() % 2 ? rand() % 8 : BOUNDARY[rand() % BOUNDARY.length]!)
    } else if (kind === 2) {
      bytes[rand() % 1024] = rand() & 0xff
    } else {
      bytes[0x1a8 + (rand() % 32)] = rand() & 0xff // link / parent UUIDs
    }
  }
}


async function exercise(rand: () => number, bytes: Uint8Array): Promise<unknown> {
  try {
    const device = await openChain(boundedStorage(bytes.slice(), NAME, WRITE_LIMIT), { format: 'vdi', writable: true })
    await walkDevice(device, rand)
    await device.close()
  } catch (e) {
    const bug = judge(e, NAME)
    if (bug) return bug
  }
  try {
    await vdiModule.check!(new MemoryStorage(bytes, NAME), { report: () => {} })
  } catch (e) {
    const bug = judge(e, NAME)
    if (bug) return bug
  }
  return undefined
}

test(`vdi metadata fuzzing (seed ${SEED}, ${CASES} cases)`, async () => {
  const bases = [await baseImage(false), await baseImage(true)]
  const rand = mulberry32(SEED)
  for (let i = 0; i < CASES; i++) {
    const bytes = bases[i % 2]!.slice()
    mutate(rand, bytes)
    const bug = await exercise(rand, bytes)
    if (bug) assert.fail(`case ${i} (seed ${SEED}): ${bug instanceof Error ? bug.stack : String(bug)}`)
  }
})
