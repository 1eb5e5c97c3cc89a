// Oracle: `qimg create` makes the images `qemu-img create` makes. Every case runs both tools with
// the same arguments, each in a directory of its own (prepared alike), and compares: the
// "Formatting …" line and messages (after the tool name), the exit code, the files left behind,
// `qemu-img check`, `qemu-img info --output=json` and, where QEMU's layout is the same as ours,
// the bytes of every file.
import { reserveSupported } from '../../src/io/holes.js'
import { after, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { syncTree } from './images.js'
import { needTools, qimg, run, runOk, tempDir, type RunResult, qimgInProcess as qimgHere } from '../helpers/oracle.js'

const root = tempDir('qimg-oracle-create-')
after(() => root.cleanup())

const quote = (arg: string): string => `'${arg.replaceAll("'", "'\\''")}'`
const MARK = '@@qemu-img exited '

/**
 * Runs several qemu-img commands from one shell (the machine may be busy: one process start
 * instead of many) and returns each one's exit code and output (stdout and stderr together).
 */
async function qemuImgBatch(commands: readonly string[][], cwd: string): Promise<{ code: number; output: string }[]> {
  const script = commands.map((c) => `qemu-img ${c.map(quote).join(' ')} 2>&1; echo "${MARK}$?"`).join('\n')
  const { stdout } = await run('sh', ['-c', script], { cwd })
  const parts = stdout.split(new RegExp(`${MARK}(\\d+)\\n`))
  return commands.map((_, i) => ({ output: parts[2 * i]!, code: Number(parts[2 * i + 1]) }))
}

/** What one tool did: its output with its directory written as '@' and its name as 'qimg'. */
interface Outcome extends RunResult { dir: string; files: string[] }

let caseNumber = 0

/**
 * Runs `qemu-img ARGS` and `qimg ARGS` ('@' in ARGS stands for each one's own directory, where
 * qemu-img also runs) after the `setup` qemu-img commands have prepared both directories alike.
 * (qemu-img creates a relative data_file in its working directory but the image looks for it
 * next to itself; qimg creates it next to the image. In the image's directory both agree.)
 */
async function both(args: readonly string[], setup: readonly string[][] = []): Promise<{ theirs: Outcome; ours: Outcome }> {
  const base = join(root.path, `case${++caseNumber}`)
  const dirs = { theirs: join(base, 'q'), ours: join(base, 'o') }
  const sub = (list: readonly string[], dir: string) => list.map((a) => a.replaceAll('@', dir))
  mkdirSync(join(dirs.theirs, 'sub'), { recursive: true }) // for the cases with an image in a subdirectory
  if (setup.length > 0) {
    const results = await qemuImgBatch(setup.map((c) => sub(c, dirs.theirs)), dirs.theirs)
    for (const r of results) assert.equal(r.code, 0, r.output)
  }
  cpSync(dirs.theirs, dirs.ours, { recursive: true })
  const [theirs, ours] = await Promise.all([
    run('qemu-img', sub(args, dirs.theirs), { cwd: dirs.theirs }),
    qimgHere(sub(args, dirs.ours)),
  ])
  const outcome = (r: RunResult, dir: string): Outcome => ({
    code: r.code,
    stdout: r.stdout.replaceAll(dir, '@'),
    stderr: r.stderr.replaceAll(dir, '@').replaceAll('qemu-img', 'qimg'),
    dir,
    files: (readdirSync(dir, { recursive: true }) as string[]).filter((f) => !statSync(join(dir, f)).isDirectory()).sort(),
  })
  return { theirs: outcome(theirs, dirs.theirs), ours: outcome(ours, dirs.ours) }
}

/** Same exit code, stdout and stderr (stderr up to trailing white space: QEMU ends hints without a newline). */
function assertSameOutput(theirs: Outcome, ours: Outcome, what: string): void {
  assert.equal(ours.code, theirs.code, `${what}: exit code (qemu-img said ${theirs.stderr}, qimg said ${ours.stderr})`)
  assert.equal(ours.stdout, theirs.stdout, `${what}: stdout`)
  assert.equal(ours.stderr.trimEnd(), theirs.stderr.trimEnd(), `${what}: stderr`)
}

/** `qemu-img info --output=json` as the test compares it: without the file's name and directory. */
function infoOf(output: string, dir: string): Record<string, unknown> {
  const json = JSON.parse(output.replaceAll(dir, '@')) as Record<string, unknown>
  delete json.filename
  return json
}

/** A successful create: checked clean and described by `info` as QEMU's image is. */
interface Good {
  name: string
  args: string[]
  setup?: string[][]
  /** qemu-img commands run in both directories after the create (e.g. making a -u backing file). */
  then?: string[][]
  /** The image file(s) to check and describe (default: a.qcow2). */
  images?: string[]
  /** Why the files are not byte for byte QEMU's, when they are not. */
  bytesDiffer?: string
  /** preallocation=falloc: QEMU fallocate()s the space; qimg too with the native addon. */
  falloc?: boolean
}

async function checkGood(t: TestContext, c: Good): Promise<void> {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  const { theirs, ours } = await both(c.args, c.setup)
  assert.equal(theirs.code, 0, `qemu-img ${c.args.join(' ')}: ${theirs.stderr}`)
  assertSameOutput(theirs, ours, c.name)
  assert.deepEqual(ours.files, theirs.files, 'files created')
  if (c.bytesDiffer === undefined) {
    for (const file of theirs.files) {
      assert.ok(readFileSync(join(ours.dir, file)).equals(readFileSync(join(theirs.dir, file))), `${file}: same bytes as QEMU's`)
    }
  }
  const images = c.images ?? ['a.qcow2']
  const commands = [
    ...images.flatMap((image) => [
      ...(image.endsWith('.img') ? [] : [['check', '-U', join(ours.dir, image)]]),
      ['info', '-U', '--output=json', join(theirs.dir, image)],
      ['info', '-U', '--output=json', join(ours.dir, image)],
    ]),
  ]
  await qemuImgBatch((c.then ?? []).map((command) => command.map((a) => a.replaceAll('@', theirs.dir))), theirs.dir)
  await qemuImgBatch((c.then ?? []).map((command) => command.map((a) => a.replaceAll('@', ours.dir))), ours.dir)
  // actual-size is st_blocks: until written back, delayed allocation may not have counted every
  // block of a fully preallocated file yet. Durable files have settled allocation on both sides.
  syncTree(theirs.dir)
  syncTree(ours.dir)
  const results = await qemuImgBatch(commands.map((command) => command.map((a) => a.replaceAll('@', ours.dir))), ours.dir)
  let at = 0
  for (const image of images) {
    if (!image.endsWith('.img')) {
      const check = results[at++]!
      assert.equal(check.code, 0, `qemu-img check ${image}: ${check.output}`)
      assert.match(check.output, /No errors were found on the image\./)
    }
    const want = infoOf(results[at++]!.output, theirs.dir)
    const got = infoOf(results[at++]!.output, ours.dir)
    if (!c.falloc && typeof want['actual-size'] === 'number') {
      // st_blocks counts the filesystem's own extent-tree blocks too, which depend on how the
      // writes fragmented the file: a few blocks either way are not the image's doing.
      const [gotSize, wantSize] = [got['actual-size'] as number, want['actual-size'] as number]
      assert.ok(Math.abs(gotSize - wantSize) <= 8 * 1024, `actual-size ${gotSize}, qemu-img's ${wantSize}`)
      delete want['actual-size']
      delete got['actual-size']
    }
    if (c.falloc) {
      // QEMU's falloc preallocation allocates the space (fallocate). qimg does too through the
      // optional native addon (QEMU leaves a hole of under a cluster in its metadata area that
      // qimg does not); without the addon, qimg's file is sparse there.
      const [gotSize, wantSize] = [got['actual-size'] as number, want['actual-size'] as number]
      if (reserveSupported()) assert.ok(Math.abs(gotSize - wantSize) <= 64 * 1024, `actual-size ${gotSize}, qemu-img's ${wantSize}`)
      else assert.ok(gotSize <= wantSize)
      delete want['actual-size']
      delete got['actual-size']
    }
    assert.deepEqual(got, want, `qemu-img info ${image}`)
  }
}

const qcow2 = (options: string, size = '1M'): string[] => ['create', '-f', 'qcow2', ...(options ? ['-o', options] : []), '@/a.qcow2', size]
const BASE = [['create', '-q', '-f', 'qcow2', '@/base.qcow2', '3M']]
const RAW_BASE = [['create', '-q', '-f', 'raw', '@/base.raw', '5M']]

/**
 * For falloc/full preallocation QEMU sizes the refcount structures for the whole file first
 * (qcow2_refcount_area): the refcount table moves behind the L1 table and the L2 table takes its
 * old cluster. qimg keeps QEMU's plain create layout. Both are valid; the data clusters match.
 */
const movedRefcounts = (p: string): string | undefined => (p === 'falloc' || p === 'full' ? 'QEMU moves the refcount table' : undefined)

const GOOD: Good[] = [
  { name: 'defaults', args: qcow2('') },
  ...['0.10', 'v2', '1.1', 'v3'].map((compat) => ({ name: `compat=${compat}`, args: qcow2(`compat=${compat}`) })),
  ...['512', '4k', '2M'].map((cs) => ({ name: `cluster_size=${cs}`, args: qcow2(`cluster_size=${cs}`, '5M') })),
  ...[1, 2, 4, 8, 32, 64].map((bits) => ({ name: `refcount_bits=${bits}`, args: qcow2(`refcount_bits=${bits}`) })),
  { name: 'compat=0.10 with refcount_bits=16', args: qcow2('compat=0.10,refcount_bits=16') },
  { name: 'lazy_refcounts', args: qcow2('lazy_refcounts=on') },
  { name: 'extended_l2', args: qcow2('extended_l2=on') },
  { name: 'extended_l2 with 16k clusters', args: qcow2('extended_l2=on,cluster_size=16k') },
  { name: 'compression_type=zstd', args: qcow2('compression_type=zstd') },
  { name: 'compression_type=zlib', args: qcow2('compression_type=zlib') },
  ...['off', 'metadata', 'falloc', 'full'].flatMap((p) => [
    { name: `preallocation=${p}`, args: qcow2(`preallocation=${p}`, '3M'), bytesDiffer: movedRefcounts(p), falloc: p === 'falloc' },
    { name: `preallocation=${p}, 4k clusters`, args: qcow2(`preallocation=${p},cluster_size=4k`), bytesDiffer: movedRefcounts(p), falloc: p === 'falloc' },
  ]),
  { name: 'preallocation=metadata, extended_l2', args: qcow2('preallocation=metadata,extended_l2=on', '3M') },
  { name: 'backing file (-b -F), size from the backing file', args: ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', '@/a.qcow2'], setup: BASE },
  { name: 'backing file with its own size', args: ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', '@/a.qcow2', '10M'], setup: BASE },
  { name: 'backing file as -o backing_file/backing_fmt', args: ['create', '-f', 'qcow2', '-o', 'backing_file=base.qcow2,backing_fmt=qcow2', '@/a.qcow2'], setup: BASE },
  { name: 'raw backing file', args: ['create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', '@/a.qcow2'], setup: RAW_BASE },
  { name: 'backing file named by absolute path', args: ['create', '-f', 'qcow2', '-b', '@/base.qcow2', '-F', 'qcow2', '@/a.qcow2'], setup: BASE, bytesDiffer: 'each header names its own directory' },
  { name: 'backing file in a subdirectory (relative to the image)', args: ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', '@/sub/a.qcow2'], setup: [['create', '-q', '-f', 'qcow2', '@/sub/base.qcow2', '2M']], images: ['sub/a.qcow2'] },
  { name: 'backing file with extended_l2 and preallocation=metadata', args: ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', '-o', 'extended_l2=on,preallocation=metadata', '@/a.qcow2'], setup: BASE },
  // (-u: the backing file is made afterwards, for `check`.)
  { name: '-u with a missing backing file', args: ['create', '-f', 'qcow2', '-u', '-b', 'missing.qcow2', '-F', 'qcow2', '@/a.qcow2', '2M'], then: [['create', '-q', '-f', 'qcow2', '@/missing.qcow2', '2M']] },
  { name: '-u: commas in the backing name are doubled in the listing', args: ['create', '-f', 'qcow2', '-u', '-o', 'backing_file=x,,y.qcow2', '-F', 'qcow2', '@/a.qcow2', '2M'], then: [['create', '-q', '-f', 'qcow2', '@/x,y.qcow2', '2M']] },
  { name: 'data_file', args: qcow2('data_file=a.data') },
  { name: 'data_file with data_file_raw', args: qcow2('data_file=a.data,data_file_raw=on') },
  { name: 'data_file with preallocation=full', args: qcow2('data_file=a.data,preallocation=full') },
  { name: 'data_file with preallocation=falloc', args: qcow2('data_file=a.data,preallocation=falloc'), falloc: true },
  ...['1k', '1000', '1.5M', '1T', '0', '0x100000', '+1M', '3m'].map((size) => ({ name: `size ${size}`, args: qcow2('', size) })),
  { name: 'size as -o size=', args: ['create', '-f', 'qcow2', '-o', 'size=2M', '@/a.qcow2'] },
  { name: 'booleans are listed as given', args: qcow2('lazy_refcounts=true,extended_l2=yes,cluster_size=16k') },
  { name: 'numbers and sizes are listed as numbers', args: qcow2('cluster_size=0x1000,refcount_bits=0x10') },
  { name: 'encryption=off, nocow, extent_size_hint', args: qcow2('encryption=off,nocow=on,extent_size_hint=1M') },
  { name: 'options in several -o, the last one wins', args: ['create', '-f', 'qcow2', '-o', 'cluster_size=4k', '-o', 'cluster_size=8k,compat=0.10', '@/a.qcow2', '1M'] },
  { name: '-q', args: ['create', '-q', '-f', 'qcow2', '@/a.qcow2', '1M'] },
  { name: 'raw', args: ['create', '-f', 'raw', '@/a.img', '1M'], images: ['a.img'] },
  { name: 'raw, the size rounded up to a sector', args: ['create', '-f', 'raw', '@/a.img', '1000'], images: ['a.img'] },
  { name: 'raw, format by default', args: ['create', '@/a.img', '64k'], images: ['a.img'] },
  { name: 'raw, preallocation=full', args: ['create', '-f', 'raw', '-o', 'preallocation=full', '@/a.img', '1M'], images: ['a.img'] },
  { name: 'raw, preallocation=falloc', args: ['create', '-f', 'raw', '-o', 'preallocation=falloc', '@/a.img', '1M'], images: ['a.img'], falloc: true },
  { name: 'raw, file options', args: ['create', '-f', 'raw', '-o', 'nocow=on,extent_size_hint=1M,preallocation=off', '@/a.img', '1M'], images: ['a.img'] },
]

describe('qimg create makes the image qemu-img create makes', { concurrency: 4 }, () => {
  for (const c of GOOD) it(c.name, (t) => checkGood(t, c))
})

describe('qimg create -o help lists what qemu-img lists', { concurrency: 4 }, () => {
  const cases = [
    ['create', '-f', 'qcow2', '-o', 'help'],
    ['create', '-f', 'raw', '-o', 'help'],
    ['create', '-f', 'qcow2', '-o', '?'],
    ['create', '-f', 'qcow2', '-o', 'help', '@/a.qcow2'],
    ['create', '-f', 'raw', '-o', 'help', '@/a.img'],
    ['create', '-f', 'qcow2', '-o', 'cluster_size=4k,help', '@/a.qcow2', '1M'],
  ]
  for (const args of cases) {
    it(args.slice(1).join(' '), async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const { theirs, ours } = await both(args)
      assert.equal(theirs.code, 0)
      assertSameOutput(theirs, ours, args.join(' '))
      assert.deepEqual(ours.files, [], 'help creates nothing')
    })
  }
})

/** A refused create: the same message (after the tool name) and exit code, and the same files. */
interface Bad {
  name: string
  args: string[]
  setup?: string[][]
}

const BAD: Bad[] = [
  ...['1Q', '-5', 'abc', '1.5', '1M2', ''].map((size) => ({ name: `bad size '${size}'`, args: qcow2('', size) })),
  { name: 'unknown -o option', args: qcow2('foo=bar') },
  { name: 'a bad boolean', args: qcow2('lazy_refcounts=maybe') },
  { name: 'a bad size option', args: qcow2('cluster_size=abc') },
  { name: 'a bad number option', args: qcow2('refcount_bits=abc') },
  { name: 'an octal-looking number', args: qcow2('refcount_bits=08') },
  { name: 'the size given twice', args: ['create', '-f', 'qcow2', '-o', 'size=1M', '@/a.qcow2', '1M'] },
  { name: 'no size', args: ['create', '-f', 'qcow2', '@/a.qcow2'] },
  { name: 'no file name', args: ['create', '-f', 'qcow2'] },
  { name: 'an extra argument', args: ['create', '-f', 'qcow2', '@/a.qcow2', '1M', '2M'] },
  { name: 'an unknown option letter', args: ['create', '-f', 'qcow2', '-Z', '@/a.qcow2', '1M'] },
  { name: 'a missing option argument', args: ['create', '@/a.qcow2', '1M', '-f'] },
  { name: '-b without -F (the format is detected and named)', args: ['create', '-f', 'qcow2', '-b', 'base.qcow2', '@/a.qcow2', '1M'], setup: BASE },
  { name: '-u -b without -F', args: ['create', '-f', 'qcow2', '-u', '-b', 'base.qcow2', '@/a.qcow2', '1M'], setup: BASE },
  { name: 'a backing file that does not exist', args: ['create', '-f', 'qcow2', '-b', 'missing.qcow2', '-F', 'qcow2', '@/a.qcow2', '1M'] },
  { name: 'a backing file that does not exist, without -F', args: ['create', '-f', 'qcow2', '-b', 'missing.qcow2', '@/a.qcow2', '1M'] },
  {
    // a.qcow2 → b.qcow2 (which does not exist yet); creating b.qcow2 over a.qcow2 would close a loop.
    name: 'a backing loop',
    args: ['create', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', '@/b.qcow2', '1M'],
    setup: [['create', '-q', '-f', 'qcow2', '-u', '-b', 'b.qcow2', '-F', 'qcow2', '@/a.qcow2', '1M']],
  },
  { name: 'an image whose backing file is itself', args: ['create', '-f', 'qcow2', '-b', '@/base.qcow2', '-F', 'qcow2', '@/base.qcow2'], setup: BASE },
  { name: 'an image whose backing file is itself, with -u', args: ['create', '-f', 'qcow2', '-u', '-b', '@/a.qcow2', '-F', 'qcow2', '@/a.qcow2', '1M'] },
  { name: 'an empty backing file name', args: ['create', '-f', 'qcow2', '-u', '-o', 'backing_file=', '-F', 'qcow2', '@/a.qcow2', '1M'] },
  { name: 'v2 with lazy_refcounts', args: qcow2('compat=0.10,lazy_refcounts=on') },
  { name: 'v2 with refcount_bits=8', args: qcow2('compat=v2,refcount_bits=8') },
  { name: 'v2 with zstd', args: qcow2('compat=v2,compression_type=zstd') },
  { name: 'v2 with extended_l2', args: qcow2('compat=v2,extended_l2=on') },
  { name: 'v2 with a data file', args: qcow2('compat=0.10,data_file=a.data') },
  { name: 'extended_l2 with 4k clusters', args: qcow2('extended_l2=on,cluster_size=4k') },
  ...['1000', '256', '4M', '0'].map((cs) => ({ name: `cluster_size=${cs}`, args: qcow2(`cluster_size=${cs}`) })),
  ...['3', '128', '0'].map((bits) => ({ name: `refcount_bits=${bits}`, args: qcow2(`refcount_bits=${bits}`) })),
  { name: 'an unknown compat level', args: qcow2('compat=v4') },
  { name: 'an unknown preallocation mode', args: qcow2('preallocation=bogus') },
  { name: 'an unknown compression type', args: qcow2('compression_type=lz4') },
  { name: 'data_file_raw without data_file', args: qcow2('data_file_raw=on') },
  { name: 'data_file_raw with a backing file', args: ['create', '-f', 'qcow2', '-o', 'data_file=a.data,data_file_raw=on', '-b', 'base.qcow2', '-F', 'qcow2', '@/a.qcow2'], setup: BASE },
  { name: 'backing_fmt without backing_file', args: qcow2('backing_fmt=qcow2') },
  { name: 'preallocation with a backing file, without extended_l2', args: ['create', '-f', 'qcow2', '-o', 'preallocation=metadata', '-b', 'base.qcow2', '-F', 'qcow2', '@/a.qcow2'], setup: BASE },
  { name: 'a size the L1 table cannot address', args: qcow2('cluster_size=512', '1T') },
  { name: 'raw with a backing file', args: ['create', '-f', 'raw', '-b', 'base.qcow2', '-F', 'qcow2', '@/a.img', '1M'], setup: BASE },
  { name: 'raw with an unknown preallocation mode', args: ['create', '-f', 'raw', '-o', 'preallocation=bogus', '@/a.img', '1M'] },
  { name: 'raw with a qcow2 option', args: ['create', '-f', 'raw', '-o', 'cluster_size=4k', '@/a.img', '1M'] },
]

describe('qimg create refuses what qemu-img create refuses, with its message', { concurrency: 4 }, () => {
  for (const c of BAD) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const { theirs, ours } = await both(c.args, c.setup)
      assert.equal(theirs.code, 1, `qemu-img ${c.args.join(' ')} should fail: ${theirs.stdout}`)
      assertSameOutput(theirs, ours, c.name)
      assert.deepEqual(ours.files, theirs.files, 'files left behind')
    })
  }

  it('raw with preallocation=metadata: the same message (QEMU leaves an empty file, qimg none)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const { theirs, ours } = await both(['create', '-f', 'raw', '-o', 'preallocation=metadata', '@/a.img', '1M'])
    assertSameOutput(theirs, ours, 'raw preallocation=metadata')
    assert.deepEqual(ours.files, [])
  })

  it('another name for the image itself as its backing file: qimg refuses (QEMU makes a self-referencing image)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    // qemu-img compares the names as given, so './a.qcow2' for 'a.qcow2' gets through and the new
    // image names itself as its backing file, which nothing can open. qimg compares the paths.
    const { theirs, ours } = await both(['create', '-f', 'qcow2', '-b', './base.qcow2', '-F', 'qcow2', '@/base.qcow2'], BASE)
    assert.equal(theirs.code, 0)
    assert.equal(ours.code, 1)
    assert.equal(ours.stderr, `qimg: @/base.qcow2: Error: Trying to create an image with the same filename as the backing file\n`)
  })
})

describe('the qimg binary, with names relative to its working directory', () => {
  it('creates over a backing file in a subdirectory as qemu-img does', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const base = join(root.path, 'relative')
    const dirs = [join(base, 'q'), join(base, 'o')] as const
    for (const dir of dirs) {
      mkdirSync(join(dir, 'sub'), { recursive: true })
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', 'sub/base.qcow2', '2M'], { cwd: dir })
    }
    const args = ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', '-o', 'cluster_size=4k', 'sub/a.qcow2']
    const [theirs, ours] = await Promise.all([run('qemu-img', args, { cwd: dirs[0] }), qimg(args, { cwd: dirs[1] })])
    assert.equal(theirs.code, 0, theirs.stderr)
    assert.deepEqual(ours, theirs)
    assert.ok(readFileSync(join(dirs[1], 'sub/a.qcow2')).equals(readFileSync(join(dirs[0], 'sub/a.qcow2'))))
    const bad = ['create', '-f', 'qcow2', '-o', 'compat=0.10,lazy_refcounts=on', 'sub/b.qcow2', '1M']
    const [theirsBad, oursBad] = await Promise.all([run('qemu-img', bad, { cwd: dirs[0] }), qimg(bad, { cwd: dirs[1] })])
    assert.equal(oursBad.code, 1)
    assert.equal(oursBad.stdout, theirsBad.stdout)
    assert.equal(oursBad.stderr, theirsBad.stderr.replaceAll('qemu-img', 'qimg'))
  })
})
