// Oracle: internal snapshots made, applied and deleted by qimg are the ones qemu-img would have
// made. Each scenario runs twice from one image — snapshot operations by `qimg snapshot` on one
// copy, by `qemu-img snapshot` on the other, guest writes by qemu-io on both — and after every
// operation: `qemu-img snapshot -l` lists the same IDs and names, `qemu-img check` finds the qimg
// copy clean, the guest disk and every snapshot (`qemu-img convert -l`) read the same on both,
// and `qimg convert -l` reads each snapshot as qemu-img does. Then a stress run of thousands of
// create/apply/delete cycles through the library against an in-memory model.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { run as runCli } from '../../src/cli/main.js'
import { openImage } from '../../src/node/open.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import { needTools, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { KiB, MiB, SNAPSHOT_CASE, create, firstDifference, prng, qemuImg, qemuIo, writePatternedRaw } from './images.js'

const root = tempDir('qimg-oracle-snapshot-')
after(() => root.cleanup())

async function qimgHere(args: readonly string[]): Promise<RunResult> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, { out: (t) => { stdout += t }, err: (t) => { stderr += t } })
  return { stdout, stderr, code }
}

/** `ID TAG` of each line of `qemu-img snapshot -l` output (dates differ between the copies). */
function idsAndNames(list: string): string[] {
  return list.split('\n').slice(2).filter(Boolean).map((line) => line.split(/\s+/).slice(0, 2).join(' '))
}

async function snapshotList(path: string): Promise<string[]> {
  return idsAndNames(await qemuImg(['snapshot', '-l', path]))
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected)
  if (at >= 0) assert.fail(`${what}: first difference at byte ${at} (0x${at.toString(16)}): ${actual[at]} vs ${expected[at]} (lengths ${actual.length}/${expected.length})`)
}

async function qemuRead(path: string, out: string, snapshot?: string): Promise<Buffer> {
  await qemuImg(['convert', ...(snapshot === undefined ? [] : ['-l', snapshot]), '-O', 'raw', path, out])
  return readFileSync(out)
}

/** One step of a scenario: a snapshot operation (both tools) or guest writes (qemu-io on both). */
type Step = { snapshot: ['-c' | '-a' | '-d', string] } | { io: string[] }

interface Scenario {
  name: string
  /** Builds `img.qcow2` in `dir`. */
  build(dir: string): Promise<void>
  steps: Step[]
}

const c = (name: string): Step => ({ snapshot: ['-c', name] })
const a = (name: string): Step => ({ snapshot: ['-a', name] })
const d = (name: string): Step => ({ snapshot: ['-d', name] })
const io = (...commands: string[]): Step => ({ io: commands })

/** The usual life of a 4 MiB disk: snapshots between writes, zero writes and discards; reverts; deletes. */
function lifeOf(cs: number): Step[] {
  return [
    c('first'),
    io('write -P 0x71 100k 300k', `write -z ${4 * cs} ${2 * cs}`, 'write -P 0x72 3M 4k'),
    c('second'),
    io('write -P 0x73 0 64k', 'discard 1M 256k', 'write -P 0x74 2M 1M'),
    a('first'),
    io('write -P 0x75 50k 10k'),
    c('third'),
    d('second'),
    a('third'),
    io('write -P 0x76 3M 1M'),
    a('nonexistent'),
    d('nonexistent'),
    c('first'), // a second snapshot named 'first': qemu-img allows it, -a/-d then take the first match
    d('first'),
    a('3'), // by ID
    d('1'),
    c('fourth'),
    io('write -P 0x77 1M 2M'),
    d('third'),
    a('fourth'),
  ]
}

/** Guest data over the first 4 MiB in clusters of `cs`. */
async function dataImage(dir: string, options: Record<string, string | number>, cs: number): Promise<void> {
  await create(dir, 'img.qcow2', 4 * MiB, { cluster_size: cs, ...options })
  await qemuIo('img.qcow2', ['write -P 0x11 0 1M', `write -P 0x12 ${cs - 100} 200`, 'write -z 1M 64k', 'write -P 0x13 2M 1536k'], { cwd: dir })
}

const SCENARIOS: Scenario[] = [
  { name: 'compat=1.1, 64 KiB clusters', build: (dir) => dataImage(dir, {}, 64 * KiB), steps: lifeOf(64 * KiB) },
  { name: 'compat=0.10', build: (dir) => dataImage(dir, { compat: '0.10' }, 64 * KiB), steps: lifeOf(64 * KiB) },
  { name: '512-byte clusters', build: (dir) => dataImage(dir, {}, 512), steps: lifeOf(512) },
  { name: 'extended_l2=on, 32 KiB clusters', build: (dir) => dataImage(dir, { extended_l2: 'on' }, 32 * KiB), steps: lifeOf(32 * KiB) },
  { name: 'lazy_refcounts=on', build: (dir) => dataImage(dir, { lazy_refcounts: 'on' }, 64 * KiB), steps: lifeOf(64 * KiB) },
  {
    name: 'compressed clusters (qemu-img convert -c)',
    async build(dir) {
      writePatternedRaw(join(dir, 'src.raw'), 4 * MiB, 3)
      await qemuImg(['convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=16384', 'src.raw', 'img.qcow2'], dir)
    },
    steps: lifeOf(16 * KiB),
  },
  {
    name: "snapshots qemu made (s1 at 2 MiB, s2, then resized to 3 MiB): applied and deleted by qimg",
    build: (dir) => SNAPSHOT_CASE.build(dir).then(() => undefined),
    steps: [
      a('s1'), // back to 2 MiB
      io('write -P 0x81 1M 512k'),
      c('after-s1'),
      a('s2'),
      d('s1'),
      io('write -P 0x82 0 100k', 'discard 1M 64k'),
      c('s3'),
      a('after-s1'),
      d('s2'),
      d('s3'),
      a('after-s1'),
      d('after-s1'),
    ],
  },
]

/** Snapshot `id` reads the same with qemu-img in both copies and with qimg in ours. */
async function assertSnapshot(dir: string, ours: string, theirs: string, id: string, what: string): Promise<void> {
  const [expected, actual] = await Promise.all([
    qemuRead(theirs, join(dir, 'theirs-snap.raw'), `snapshot.id=${id}`), qemuRead(ours, join(dir, 'ours-snap.raw'), `snapshot.id=${id}`),
  ])
  assertSameBytes(actual, expected, `${what}: snapshot ${id} (qemu-img convert -l)`)
  const r = await qimgHere(['convert', '-l', `snapshot.id=${id}`, '-O', 'raw', ours, join(dir, 'qimg-snap.raw')])
  assert.equal(r.code, 0, r.stderr)
  assertSameBytes(readFileSync(join(dir, 'qimg-snap.raw')), expected, `${what}: snapshot ${id} (qimg convert -l)`)
}

describe('snapshot -c/-a/-d: same result as qemu-img snapshot', { concurrency: 2 }, () => {
  for (const scenario of SCENARIOS) {
    it(scenario.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dir = mkdtempSync(join(root.path, 'scenario-'))
      await scenario.build(dir)
      mkdirSync(join(dir, 'qemu'))
      mkdirSync(join(dir, 'qimg'))
      const theirs = join(dir, 'qemu', 'img.qcow2')
      const ours = join(dir, 'qimg', 'img.qcow2')
      copyFileSync(join(dir, 'img.qcow2'), theirs)
      copyFileSync(join(dir, 'img.qcow2'), ours)
      for (const [i, step] of scenario.steps.entries()) {
        if ('io' in step) {
          await Promise.all([qemuIo(theirs, step.io), qemuIo(ours, step.io)])
          continue
        }
        const what = `step ${i}: snapshot ${step.snapshot.join(' ')}`
        const [expected, actual] = await Promise.all([run('qemu-img', ['snapshot', ...step.snapshot, theirs]), qimgHere(['snapshot', ...step.snapshot, ours])])
        assert.equal(actual.stderr.replace(/^qimg: /gm, ''), expected.stderr.replace(/^qemu-img: /gm, ''), `${what}: stderr`)
        assert.equal(actual.code, expected.code, `${what}: exit code`)
        if (expected.code !== 0) continue // refused: nothing changed
        const [listOurs, listTheirs, listed] = await Promise.all([qemuImg(['snapshot', '-l', ours]), qemuImg(['snapshot', '-l', theirs]), qimgHere(['snapshot', '-l', ours])])
        assert.deepEqual(idsAndNames(listOurs), idsAndNames(listTheirs), `${what}: snapshot -l`)
        assert.equal(listed.stdout, listOurs, `${what}: qimg snapshot -l`)
        const check = await run('qemu-img', ['check', ours])
        assert.equal(check.code, 0, `${what}: qemu-img check of qimg's image:\n${check.stdout}${check.stderr}`)
        const [disk, expectedDisk] = await Promise.all([qemuRead(ours, join(dir, 'ours.raw')), qemuRead(theirs, join(dir, 'theirs.raw'))])
        assertSameBytes(disk, expectedDisk, `${what}: guest disk (and size)`)
        // A new snapshot reads right at once; all of them at the end (check covers the refcounts between).
        if (step.snapshot[0] === '-c') await assertSnapshot(dir, ours, theirs, idsAndNames(listOurs).at(-1)!.split(' ')[0]!, what)
      }
      const ids = (await snapshotList(ours)).map((line) => line.split(' ')[0]!)
      for (const id of ids) await assertSnapshot(dir, ours, theirs, id, 'at the end')
    })
  }
})

describe('snapshot stress through the library', () => {
  it('thousands of create/apply/delete cycles between writes keep qemu-img check clean and the data right', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dir = mkdtempSync(join(root.path, 'stress-'))
    const path = join(dir, 'img.qcow2')
    const size = 1 * MiB
    const cs = 4 * KiB
    await create(dir, 'img.qcow2', size, { cluster_size: cs })
    const random = prng(2024)
    const pick = (n: number) => Math.floor(random() * n)
    let model = Buffer.alloc(size)
    const snapshots = new Map<string, Buffer>() // name → disk at creation
    let device = await openImage(path, { writable: true, cache: 'unsafe' })
    let image = device.driver as Qcow2Image
    const cycles = 2000
    let created = 0
    try {
      for (let cycle = 1; cycle <= cycles; cycle++) {
        // Guest writes: data of any size and alignment, sometimes zeros or discards.
        for (let w = pick(3); w >= 0; w--) {
          const length = 1 + pick(random() < 0.5 ? 2 * cs : 40 * KiB)
          const offset = pick(size - length)
          const kind = pick(10)
          if (kind === 0) {
            await device.writeZeroes(offset, length)
            model.fill(0, offset, offset + length)
          } else {
            const bytes = Buffer.alloc(length, (cycle * 7 + w) % 255 + 1)
            bytes[0] = cycle & 0xff
            await device.write(offset, bytes)
            bytes.copy(model, offset)
          }
        }
        const op = pick(10)
        if (op < 4 && snapshots.size < 24) {
          const name = `s${++created}`
          await image.createSnapshot(name)
          snapshots.set(name, Buffer.from(model))
        } else if (op < 7 && snapshots.size > 0) {
          const names = [...snapshots.keys()]
          const name = names[pick(names.length)]!
          await image.deleteSnapshot(name)
          snapshots.delete(name)
        } else if (op < 8 && snapshots.size > 0) {
          const names = [...snapshots.keys()]
          const name = names[pick(names.length)]!
          await image.applySnapshot(name)
          model = Buffer.from(snapshots.get(name)!)
        }
        if (cycle % 50 === 0) {
          const at = pick(size - 64 * KiB)
          assertSameBytes(await device.read(at, 64 * KiB), model.subarray(at, at + 64 * KiB), `cycle ${cycle}: library read`)
        }
        if (cycle % 400 === 0) {
          await device.close()
          const check = await run('qemu-img', ['check', path])
          assert.equal(check.code, 0, `cycle ${cycle}: qemu-img check:\n${check.stdout}${check.stderr}`)
          assert.deepEqual((await snapshotList(path)).map((line) => line.split(' ')[1]), [...snapshots.keys()], `cycle ${cycle}: snapshot names`)
          assertSameBytes(await qemuRead(path, join(dir, 'disk.raw')), model, `cycle ${cycle}: guest disk`)
          const names = [...snapshots.keys()]
          for (const name of names.slice(-2)) {
            assertSameBytes(await qemuRead(path, join(dir, 'snap.raw'), name), snapshots.get(name)!, `cycle ${cycle}: snapshot ${name}`)
          }
          device = await openImage(path, { writable: true, cache: 'unsafe' })
          image = device.driver as Qcow2Image
        }
      }
    } finally {
      await device.close()
    }
    assert.ok(created > cycles / 4, `only ${created} snapshots created`)
  })
})
