// Oracle: `amend -o compat=0.10` (qcow2_downgrade) on images with internal snapshots and zero
// clusters. Every case is built once with qemu-img/qemu-io, then copied: qemu-img amends one
// copy, qimg the other. Both must print the same and exit alike; after a downgrade qimg's copy
// passes `qemu-img check`, `qemu-img info` shows compat 0.10 and the snapshots it showed
// before, the snapshot table is untouched (its v3 extra data kept, as QEMU keeps it), and the
// guest content of the active layer and of every snapshot equals the original's.
//
// Where QEMU 7.2 loses data (see src/qcow2/expand-zero.ts) the cases say so: qimg must keep the
// original content there, and is compared with qemu-img only for the messages.
import { after, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, closeSync, readSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, qimg, run, runOk, tempDir } from '../helpers/oracle.js'
import { KiB, MiB, create, firstDifference, qemuImg, qemuIo } from './images.js'

const root = tempDir('qimg-oracle-downgrade-')
after(() => root.cleanup())

interface Dirs { original: string; theirs: string; ours: string }

/** Builds a case in `original`, then copies it for qemu-img (`theirs`) and qimg (`ours`). */
async function threeCopies(build: (dir: string) => Promise<void>): Promise<Dirs> {
  const dir = mkdtempSync(join(root.path, 'case-'))
  const original = join(dir, 'original')
  mkdirSync(original)
  await build(original)
  cpSync(original, join(dir, 'qemu'), { recursive: true })
  cpSync(original, join(dir, 'qimg'), { recursive: true })
  return { original, theirs: join(dir, 'qemu'), ours: join(dir, 'qimg') }
}

/** `amend` by both tools: same stderr (less the program name), stdout and exit code. */
async function amendBoth(dirs: Dirs, args: readonly string[]): Promise<number> {
  const [t, o] = await Promise.all([run('qemu-img', ['amend', ...args], { cwd: dirs.theirs }), qimg(['amend', ...args], { cwd: dirs.ours })])
  assert.equal(o.stderr.replace(/^qimg: /gm, ''), t.stderr.replace(/^qemu-img: /gm, ''), 'amend: stderr')
  assert.equal(o.code, t.code, 'amend: exit code')
  assert.equal(o.stdout, t.stdout, 'amend: stdout')
  return t.code
}

type Info = Record<string, unknown> & { snapshots?: { id: string }[]; 'format-specific': { data: { compat: string } } }

async function infoOf(dir: string, extra: string[] = []): Promise<Info> {
  const info = JSON.parse(await qemuImg(['info', ...extra, '--output=json', 'img.qcow2'], dir)) as Info
  const { 'actual-size': _size, children: _children, 'dirty-flag': _dirty, filename: _name, ...rest } = info
  return rest as Info
}

/** Guest bytes of the active layer (`''`) and of each snapshot `ids`, as qemu-img reads them. */
async function contents(dir: string, ids: string[], open: string[]): Promise<Map<string, Buffer>> {
  const all = ['', ...ids]
  await Promise.all(all.map((id) => qemuImg(['convert', ...(id ? ['-l', `snapshot.id=${id}`] : []), ...open, '-O', 'raw', `content-${id || 'active'}.raw`], dir)))
  return new Map(all.map((id) => [id, readFileSync(join(dir, `content-${id || 'active'}.raw`))]))
}

const cache = new Map<string, Promise<Map<string, Buffer>>>()

/** The active layer and every snapshot read the same in `a` and `b` (each directory read once). */
async function assertSameContent(a: string, b: string, ids: string[], what: string, open = ['img.qcow2']): Promise<void> {
  const read = (dir: string) => {
    let got = cache.get(dir)
    if (!got) cache.set(dir, got = contents(dir, ids, open))
    return got
  }
  const [x, y] = await Promise.all([read(a), read(b)])
  for (const id of ['', ...ids]) {
    const at = firstDifference(x.get(id)!, y.get(id)!)
    assert.ok(at < 0, `${what}: ${id ? `snapshot ${id}` : 'active layer'} differs at byte ${at} (lengths ${x.get(id)!.length}/${y.get(id)!.length})`)
  }
}

/** Bytes of the snapshot table (offset from the header, one cluster) and the header fields naming it. */
function snapshotTable(dir: string, clusterSize: number): Buffer {
  const fd = openSync(join(dir, 'img.qcow2'), 'r')
  try {
    const header = Buffer.alloc(72)
    readSync(fd, header, 0, 72, 0)
    const table = Buffer.alloc(clusterSize)
    readSync(fd, table, 0, clusterSize, Number(header.readBigUInt64BE(64)))
    return Buffer.concat([header.subarray(60, 72), table])
  } finally {
    closeSync(fd)
  }
}

async function assertClean(dir: string, open = ['img.qcow2']): Promise<void> {
  const r = await run('qemu-img', ['check', ...open], { cwd: dir })
  assert.equal(r.code, 0, `qemu-img check:\n${r.stdout}${r.stderr}`)
}

interface Case {
  name: string
  build: (dir: string) => Promise<void>
  /** QEMU 7.2 corrupts this image (why): qimg's result is held to the original only. */
  qemuLoses?: string
  clusterSize?: number
}

const SIZE = 8 * MiB

/** Snapshots that share every L2 table with the active layer: no copy-on-write after them. */
async function sharedTables(dir: string): Promise<void> {
  await create(dir, 'img.qcow2', SIZE, { cluster_size: 64 * KiB })
  await qemuIo('img.qcow2', ['write -P 0x11 0 1M', 'write -z 256k 128k', 'write -z 2M 192k', 'write -z -u 512k 64k', 'write -P 0x12 5M 64k'], { cwd: dir })
  await qemuImg(['snapshot', '-c', 's1', 'img.qcow2'], dir)
  await qemuImg(['snapshot', '-c', 's2', 'img.qcow2'], dir)
}

/**
 * Over a backing file, 4 KiB clusters (an L2 table maps 2 MiB): tables shared by snapshots and
 * the active layer, tables copied on write after a snapshot, zero clusters written before and
 * after each snapshot (never over data a snapshot still reads).
 */
async function overBacking(dir: string): Promise<void> {
  await create(dir, 'base.qcow2', SIZE, { cluster_size: 64 * KiB })
  await qemuIo('base.qcow2', ['write -P 0xbb 0 8M'], { cwd: dir })
  await create(dir, 'img.qcow2', SIZE, { cluster_size: 4 * KiB }, { file: 'base.qcow2', format: 'qcow2' })
  await qemuIo('img.qcow2', ['write -P 0x11 0 512k', 'write -z 128k 64k', 'write -z 1M 64k', 'write -z 2M 64k', 'write -z -u 2200k 12k'], { cwd: dir })
  await qemuImg(['snapshot', '-c', 's1', 'img.qcow2'], dir)
  await qemuIo('img.qcow2', ['write -P 0x22 2304k 64k', 'write -z 6M 64k', 'write -P 0x33 4M 64k', 'write -z 4M 16k'], { cwd: dir })
  await qemuImg(['snapshot', '-c', 's2', 'img.qcow2'], dir)
  await qemuIo('img.qcow2', ['write -z 6208k 8k', 'write -P 0x44 7M 4k', 'write -z 2400k 4k'], { cwd: dir })
}

/** `write -z` over data the snapshot before it still reads (an allocated zero cluster, shared). */
function zeroOverShared(backing: boolean): (dir: string) => Promise<void> {
  return async (dir) => {
    if (backing) {
      await create(dir, 'base.qcow2', SIZE)
      await qemuIo('base.qcow2', ['write -P 0xbb 0 8M'], { cwd: dir })
    }
    await create(dir, 'img.qcow2', SIZE, { cluster_size: 64 * KiB }, backing ? { file: 'base.qcow2', format: 'qcow2' } : undefined)
    await qemuIo('img.qcow2', ['write -P 0x11 0 1M', 'write -z 1M 128k', 'write -P 0x22 2M 256k'], { cwd: dir })
    await qemuImg(['snapshot', '-c', 's1', 'img.qcow2'], dir)
    await qemuIo('img.qcow2', ['write -z 0 64k', 'write -z 2M 64k', 'write -z -u 2112k 64k', 'write -z 3M 64k', 'write -P 0x33 1M 64k'], { cwd: dir })
    await qemuImg(['snapshot', '-c', 's2', 'img.qcow2'], dir)
    await qemuIo('img.qcow2', ['write -P 0x44 64k 64k'], { cwd: dir })
  }
}

const DOWNGRADES: Case[] = [
  { name: 'snapshots sharing every L2 table with the active layer, no backing file', build: sharedTables },
  { name: 'shared and copied L2 tables over a backing file (zero clusters allocated, refcount = sharers)', build: overBacking, clusterSize: 4 * KiB },
  {
    name: 'lazy refcounts, snapshots before and after zero writes',
    build: async (dir) => {
      await create(dir, 'img.qcow2', SIZE, { lazy_refcounts: 'on' })
      await qemuIo('img.qcow2', ['write -P 0x11 0 256k', 'write -z 64k 64k', 'write -z 1M 64k'], { cwd: dir })
      await qemuImg(['snapshot', '-c', 's1', 'img.qcow2'], dir)
      await qemuIo('img.qcow2', ['write -P 0x22 4M 128k', 'write -z 4M 64k', 'write -z 5M 64k'], { cwd: dir })
      await qemuImg(['snapshot', '-c', 'after', 'img.qcow2'], dir)
    },
  },
  {
    name: 'allocated zero cluster over data an earlier snapshot reads, no backing file',
    build: zeroOverShared(false),
    qemuLoses: 'zeroes the shared cluster in place: snapshot s1 reads zeros, check finds COPIED on refcount 3',
  },
  {
    name: 'allocated zero cluster over data an earlier snapshot reads, over a backing file',
    build: zeroOverShared(true),
    qemuLoses: 'zeroes the shared cluster in place: snapshot s1 reads zeros',
  },
]

describe('amend -o compat=0.10', { concurrency: 3 }, () => {
describe('with internal snapshots', { concurrency: 3 }, () => {
  for (const c of DOWNGRADES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dirs = await threeCopies(c.build)
      const before = await infoOf(dirs.original)
      const ids = (before.snapshots ?? []).map((s) => s.id)
      assert.ok(ids.length > 0 && before['format-specific'].data.compat === '1.1')
      assert.equal(await amendBoth(dirs, ['-o', 'compat=0.10', 'img.qcow2']), 0)
      await assertClean(dirs.ours)
      const ours = await infoOf(dirs.ours)
      assert.equal(ours['format-specific'].data.compat, '0.10')
      assert.deepEqual(ours.snapshots, before.snapshots, 'snapshots as before')
      assert.deepEqual(ours, await infoOf(dirs.theirs), 'qemu-img info: as after qemu-img amend')
      const cs = c.clusterSize ?? 64 * KiB
      assert.ok(snapshotTable(dirs.ours, cs).equals(snapshotTable(dirs.original, cs)), 'snapshot table untouched')
      await assertSameContent(dirs.ours, dirs.original, ids, 'qimg vs original')
      if (c.qemuLoses) {
        t.diagnostic(`QEMU 7.2 ${c.qemuLoses}`)
      } else {
        await assertClean(dirs.theirs)
        await assertSameContent(dirs.ours, dirs.theirs, ids, 'qimg vs qemu-img')
      }
    })
  }
})

/** Pokes snapshot 0's 64-bit VM state size (first extra data field) to 4 GiB. */
function bigVmState(dir: string): void {
  const fd = openSync(join(dir, 'img.qcow2'), 'r+')
  try {
    const header = Buffer.alloc(72)
    readSync(fd, header, 0, 72, 0)
    const field = Buffer.alloc(8)
    field.writeBigUInt64BE(1n << 32n)
    writeSync(fd, field, 0, 8, Number(header.readBigUInt64BE(64)) + 40)
  } finally {
    closeSync(fd)
  }
}

/** A snapshot and zero clusters, plus what makes the case; `open` as the tools get the image. */
function withSnapshot(options: Record<string, string | number>, then: (dir: string) => Promise<void> = async () => undefined): (dir: string) => Promise<void> {
  return async (dir) => {
    await create(dir, 'img.qcow2', 4 * MiB, options)
    await qemuIo('img.qcow2', ['write -P 0x11 0 256k', 'write -z 64k 64k', 'write -z 1M 64k'], { cwd: dir })
    await qemuImg(['snapshot', '-c', 's1', 'img.qcow2'], dir)
    await then(dir)
  }
}

const REFUSALS: [name: string, build: (dir: string) => Promise<void>][] = [
  ['a snapshot of another disk size', withSnapshot({}, (dir) => qemuImg(['resize', '-q', 'img.qcow2', '6M'], dir).then(() => undefined))],
  ['a snapshot with 4 GiB of VM state', withSnapshot({}, async (dir) => bigVmState(dir))],
  ['refcount_bits=64', withSnapshot({ refcount_bits: 64 })],
  ['extended_l2=on', withSnapshot({ extended_l2: 'on' })],
  ['an external data file', async (dir) => {
    await create(dir, 'img.qcow2', 4 * MiB, { data_file: 'img.data' })
    await qemuIo('img.qcow2', ['write -P 0x11 0 256k', 'write -z 64k 64k'], { cwd: dir })
  }],
  // QEMU expands the zero clusters first, then refuses: the image stays v3, zeros expanded.
  ['zstd with compressed clusters in the active layer', withSnapshot({ compression_type: 'zstd' }, (dir) => qemuIo('img.qcow2', ['write -c -P 0x33 2M 64k', 'write -z 3M 64k'], { cwd: dir }).then(() => undefined))],
]

describe('refusals', { concurrency: 3 }, () => {
  for (const [name, build] of REFUSALS) {
    it(name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dirs = await threeCopies(build)
      assert.equal(await amendBoth(dirs, ['-o', 'compat=0.10', 'img.qcow2']), 1)
      const ids = ((await infoOf(dirs.original)).snapshots ?? []).map((s) => s.id)
      assert.deepEqual(await infoOf(dirs.ours), await infoOf(dirs.theirs), 'qemu-img info')
      assert.equal(await qemuImg(['map', '--output=json', 'img.qcow2'], dirs.ours), await qemuImg(['map', '--output=json', 'img.qcow2'], dirs.theirs), 'qemu-img map')
      await assertClean(dirs.ours)
      await assertSameContent(dirs.ours, dirs.original, ids, 'qimg vs original')
    })
  }

  it('zstd with compressed clusters only in a snapshot (QEMU 7.2 downgrades; the snapshot then fails to read)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dirs = await threeCopies(withSnapshot({ compression_type: 'zstd' }, async (dir) => {
      await qemuIo('img.qcow2', ['write -c -P 0x33 2M 64k'], { cwd: dir })
      await qemuImg(['snapshot', '-c', 's2', 'img.qcow2'], dir)
      await qemuIo('img.qcow2', ['write -P 0x44 2M 64k'], { cwd: dir })
    }))
    const r = await qimg(['amend', '-o', 'compat=0.10', 'img.qcow2'], { cwd: dirs.ours })
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'qimg: Cannot downgrade an image with zstd compression type and existing compressed clusters\n')
    assert.equal((await infoOf(dirs.ours))['format-specific'].data.compat, '1.1')
    await assertClean(dirs.ours)
    await assertSameContent(dirs.ours, dirs.original, ['1', '2'], 'qimg vs original')
  })
})

describe('other images', { concurrency: 2 }, () => {
  it('persistent bitmaps: downgraded, the bitmap clusters leak as with qemu-img', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dirs = await threeCopies(async (dir) => {
      await create(dir, 'img.qcow2', 4 * MiB)
      await qemuImg(['bitmap', '--add', 'img.qcow2', 'b0'], dir)
      await qemuIo('img.qcow2', ['write -P 0x11 0 256k', 'write -z 64k 64k'], { cwd: dir })
    })
    assert.equal(await amendBoth(dirs, ['-o', 'compat=0.10', 'img.qcow2']), 0)
    const [o, th] = await Promise.all([run('qemu-img', ['check', 'img.qcow2'], { cwd: dirs.ours }), run('qemu-img', ['check', 'img.qcow2'], { cwd: dirs.theirs })])
    assert.equal(o.code, th.code, `qemu-img check: ${o.stdout} / ${th.stdout}`)
    assert.equal((await infoOf(dirs.ours))['format-specific'].data.compat, '0.10')
    await assertSameContent(dirs.ours, dirs.theirs, [], 'qimg vs qemu-img')
  })

  it('LUKS: allocated zero clusters get encrypted zeros (QEMU 7.2 writes plain zeros: noise)', async (t: TestContext) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const secret = ['--object', 'secret,id=s0,file=pass.txt']
    const opts = 'driver=qcow2,file.filename=img.qcow2,encrypt.key-secret=s0'
    const dirs = await threeCopies(async (dir) => {
      writeFileSync(join(dir, 'pass.txt'), 'hunter2')
      await qemuImg(['create', '-q', '-f', 'qcow2', ...secret, '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=100', 'img.qcow2', '4M'], dir)
      await runOk('qemu-io', [...secret, '--image-opts', '-c', 'write -P 0x11 0 256k', '-c', 'write -z 64k 64k', '-c', 'write -z 1M 64k', opts], { cwd: dir })
    })
    const r = await qimg(['amend', ...secret, '-o', 'compat=0.10', '--image-opts', opts], { cwd: dirs.ours })
    assert.equal(r.code, 0, r.stderr)
    await assertClean(dirs.ours, [...secret, '--image-opts', opts])
    assert.equal((await infoOf(dirs.ours))['format-specific'].data.compat, '0.10')
    await assertSameContent(dirs.ours, dirs.original, [], 'qimg vs original', [...secret, '--image-opts', opts])
  })
})
})
