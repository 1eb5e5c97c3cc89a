// Oracle: rebase, commit and amend. Every case runs on two copies of the same directory of
// images: qemu-img does the operation in one, qimg in the other (same arguments, same relative
// names). Then the guest-visible bytes of every image of the chain are equal between the two
// copies, qemu-img check finds qimg's images clean, and (amend) qemu-img info shows the options
// qemu-img's amend gives. Refusals: same message (less the program prefix), same exit code.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, qimg, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { KiB, MiB, create, firstDifference, qemuImg, qemuIo } from './images.js'

const root = tempDir('qimg-oracle-chain-')
after(() => root.cleanup())

/** Two copies of a freshly built directory: `theirs` for qemu-img, `ours` for qimg. */
async function twoCopies(build: (dir: string) => Promise<void>): Promise<{ theirs: string; ours: string }> {
  const dir = mkdtempSync(join(root.path, 'case-'))
  const src = join(dir, 'src')
  mkdirSync(src)
  await build(src)
  cpSync(src, join(dir, 'qemu'), { recursive: true })
  cpSync(src, join(dir, 'qimg'), { recursive: true })
  return { theirs: join(dir, 'qemu'), ours: join(dir, 'qimg') }
}

/** Runs `args` with qemu-img in `theirs` and qimg in `ours`; same stderr (less prefix) and exit code. */
async function both(args: readonly string[], dirs: { theirs: string; ours: string }): Promise<{ theirs: RunResult; ours: RunResult }> {
  const [t, o] = await Promise.all([run('qemu-img', args, { cwd: dirs.theirs }), qimg(args, { cwd: dirs.ours })])
  const what = `${args.join(' ')}`
  assert.equal(o.stderr.replace(/^qimg: /gm, ''), t.stderr.replace(/^qemu-img: /gm, '').replaceAll("'qemu-img --help'", "'qimg --help'"), `${what}: stderr`)
  assert.equal(o.code, t.code, `${what}: exit code`)
  assert.equal(o.stdout, t.stdout, `${what}: stdout`)
  return { theirs: t, ours: o }
}

/** Guest bytes of `file` (with its chain) as qemu-img reads them. */
async function content(dir: string, file: string): Promise<Buffer> {
  const out = `${file}.content.raw`
  await qemuImg(['convert', '-O', 'raw', file, out], dir)
  return readFileSync(join(dir, out))
}

async function assertSameContent(dirs: { theirs: string; ours: string }, files: string[], what: string): Promise<void> {
  for (const file of files) {
    const [t, o] = await Promise.all([content(dirs.theirs, file), content(dirs.ours, file)])
    const at = firstDifference(o, t)
    assert.ok(at < 0, `${what}: ${file} differs from qemu-img's result at byte ${at} (lengths ${o.length}/${t.length})`)
  }
}

async function assertClean(dir: string, files: string[], what: string): Promise<void> {
  for (const file of files) {
    const r = await run('qemu-img', ['check', file], { cwd: dir })
    assert.equal(r.code, 0, `${what}: qemu-img check ${file}:\n${r.stdout}${r.stderr}`)
  }
}

/** What qemu-img info says of an image, less what differs between two copies of a directory. */
async function infoOf(dir: string, file: string): Promise<unknown> {
  const info = JSON.parse(await qemuImg(['info', '--output=json', file], dir)) as Record<string, unknown>
  const { 'actual-size': _size, children: _children, 'dirty-flag': _dirty, ...rest } = info
  return rest
}

/** base.qcow2 ← mid.qcow2 ← top.qcow2, each layer writing its own pattern; other.qcow2 unrelated. */
async function buildChain(dir: string): Promise<void> {
  await create(join(dir), 'base.qcow2', 4 * MiB, { cluster_size: 64 * KiB })
  await qemuIo('base.qcow2', ['write -P 0xb0 0 4M', 'write -P 0xb1 1M 512k'], { cwd: dir })
  await create(dir, 'mid.qcow2', 4 * MiB, { cluster_size: 16 * KiB }, { file: 'base.qcow2', format: 'qcow2' })
  await qemuIo('mid.qcow2', ['write -P 0xa0 64k 1M', 'write -z 2M 256k', 'discard 3M 64k', 'write -P 0xa1 3500k 5k'], { cwd: dir })
  await create(dir, 'top.qcow2', 4 * MiB, { cluster_size: 64 * KiB }, { file: 'mid.qcow2', format: 'qcow2' })
  await qemuIo('top.qcow2', ['write -P 0x70 0 100k', 'write -P 0x71 1M 64k', 'write -z 2100k 100k', 'write -P 0x72 4000k 96k'], { cwd: dir })
  await create(dir, 'other.qcow2', 3 * MiB, { cluster_size: 4 * KiB })
  await qemuIo('other.qcow2', ['write -P 0xb0 0 1M', 'write -P 0xc0 1M 1M', 'write -P 0xb1 1M 100k'], { cwd: dir })
}

const CHAIN = ['top.qcow2', 'mid.qcow2', 'base.qcow2', 'other.qcow2']

describe('rebase', { concurrency: 2 }, () => {
  const cases: [string, string[]][] = [
    ['safe: top onto the base, skipping mid', ['-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']],
    ['safe: top onto an unrelated, shorter image', ['-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2']],
    ['safe: mid onto another image (its overlay sees the change too)', ['-b', 'other.qcow2', '-F', 'qcow2', 'mid.qcow2']],
    ['safe: -b "" flattens top', ['-b', '', 'top.qcow2']],
    ['unsafe: -u onto another image', ['-u', '-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2']],
    ['unsafe: -u -b "" drops the backing file', ['-u', '-b', '', 'top.qcow2']],
    ['safe, -q, -F missing: data copied, then refused', ['-q', '-b', 'base.qcow2', 'top.qcow2']],
    ['unsafe, -F missing: refused', ['-u', '-b', 'other.qcow2', 'top.qcow2']],
  ]
  for (const [name, args] of cases) {
    it(name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dirs = await twoCopies(buildChain)
      await both(['rebase', ...args], dirs)
      await assertSameContent(dirs, CHAIN, `rebase ${args.join(' ')}`)
      await assertClean(dirs.ours, CHAIN, `rebase ${args.join(' ')}`)
      assert.deepEqual(await infoOf(dirs.ours, 'top.qcow2'), await infoOf(dirs.theirs, 'top.qcow2'), 'qemu-img info of top')
    })
  }

  it('refusals: missing -b', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dirs = await twoCopies(buildChain)
    await both(['rebase', 'top.qcow2'], dirs)
    await assertSameContent(dirs, CHAIN, 'after refusals')
  })
})

describe('commit', { concurrency: 2 }, () => {
  const cases: [string, string[]][] = [
    ['default: top into mid, top emptied', ['top.qcow2']],
    ['-d: top into mid, top kept', ['-d', 'top.qcow2']],
    ['-b base.qcow2: top and mid into the base (3-deep chain)', ['-b', 'base.qcow2', 'top.qcow2']],
    ['mid into the base', ['mid.qcow2']],
    ['-q', ['-q', 'top.qcow2']],
  ]
  for (const [name, args] of cases) {
    it(name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dirs = await twoCopies(buildChain)
      await both(['commit', ...args], dirs)
      await assertSameContent(dirs, CHAIN, `commit ${args.join(' ')}`)
      await assertClean(dirs.ours, CHAIN, `commit ${args.join(' ')}`)
    })
  }

  it('refusals: an image without a backing file', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dirs = await twoCopies(buildChain)
    await both(['commit', 'other.qcow2'], dirs)
  })
})

/** One image with data, zero clusters, a discard; optionally more creation options. */
function amendImage(options: Record<string, string | number> = {}): (dir: string) => Promise<void> {
  return async (dir) => {
    await create(dir, 'img.qcow2', 4 * MiB, { cluster_size: 64 * KiB, ...options })
    await qemuIo('img.qcow2', ['write -P 0x11 0 1M', 'write -z 64k 128k', 'write -z 2M 256k', 'write -P 0x12 3M 100k', 'discard 512k 64k'], { cwd: dir })
  }
}

describe('amend', { concurrency: 2 }, () => {
  const cases: [string, (dir: string) => Promise<void>, string][] = [
    ['compat=0.10 (zero clusters expanded)', amendImage(), 'compat=0.10'],
    ['compat=1.1 from 0.10', amendImage({ compat: '0.10' }), 'compat=1.1'],
    ['compat=v3 from 0.10 with lazy_refcounts=on', amendImage({ compat: '0.10' }), 'compat=v3,lazy_refcounts=on'],
    ['lazy_refcounts=on', amendImage(), 'lazy_refcounts=on'],
    ['lazy_refcounts=off', amendImage({ lazy_refcounts: 'on' }), 'lazy_refcounts=off'],
    ['refcount_bits=1', amendImage(), 'refcount_bits=1'],
    ['refcount_bits=64', amendImage(), 'refcount_bits=64'],
    ['refcount_bits=16 from 64', amendImage({ refcount_bits: 64 }), 'refcount_bits=16'],
    ['size=8M', amendImage(), 'size=8M'],
    ['size=3M (shrink)', amendImage(), 'size=3M'],
    ['compat=0.10 with refcount_bits=1 is refused', amendImage(), 'compat=0.10,refcount_bits=1'],
    ['lazy_refcounts=on on a v2 image is refused', amendImage({ compat: '0.10' }), 'lazy_refcounts=on'],
    ['cluster_size is creation-only', amendImage(), 'cluster_size=4096'],
    ['extended_l2 is creation-only', amendImage(), 'extended_l2=on'],
    ['preallocation is creation-only', amendImage(), 'preallocation=metadata'],
    ['compression_type is creation-only', amendImage(), 'compression_type=zstd'],
    ['backing_file change is refused', amendImage(), 'backing_file=other.qcow2'],
    ['data_file on an image without one is refused', amendImage(), 'data_file=x.data'],
    ['unknown option', amendImage(), 'no_such_option=1'],
    ['invalid compat', amendImage(), 'compat=2.0'],
  ]
  for (const [name, build, options] of cases) {
    it(name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dirs = await twoCopies(build)
      const { theirs } = await both(['amend', '-o', options, 'img.qcow2'], dirs)
      await assertSameContent(dirs, ['img.qcow2'], `amend -o ${options}`)
      await assertClean(dirs.ours, ['img.qcow2'], `amend -o ${options}`)
      if (theirs.code === 0) assert.deepEqual(await infoOf(dirs.ours, 'img.qcow2'), await infoOf(dirs.theirs, 'img.qcow2'), `amend -o ${options}: qemu-img info`)
    })
  }

  it('data_file rename on an image with an external data file', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dirs = await twoCopies(async (dir) => {
      await create(dir, 'img.qcow2', 4 * MiB, { data_file: 'img.data' })
      await qemuIo('img.qcow2', ['write -P 0x11 0 1M', 'write -P 0x12 3M 64k'], { cwd: dir })
    })
    await both(['amend', '-o', 'data_file=renamed.data', 'img.qcow2'], dirs)
    assert.deepEqual(await infoOf(dirs.ours, 'img.qcow2'), await infoOf(dirs.theirs, 'img.qcow2'), 'qemu-img info')
    for (const dir of [dirs.ours, dirs.theirs]) {
      assert.ok(existsSync(join(dir, 'img.data')))
      renameSync(join(dir, 'img.data'), join(dir, 'renamed.data'))
    }
    await assertSameContent(dirs, ['img.qcow2'], 'after the data file rename')
    await assertClean(dirs.ours, ['img.qcow2'], 'after the data file rename')
  })
})
