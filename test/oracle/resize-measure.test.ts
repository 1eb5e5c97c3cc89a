// Oracle: `qimg resize` and `qimg measure` against qemu-img. Resize runs on two copies of the same
// image (qemu-img on one, qimg on the other); the results must check clean and read the same.
// Measure must print exactly what qemu-img prints, for sizes and for source images.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { hasTool, needTools, run, runOk, tempDir, type RunResult, qimgInProcess as qimgHere } from '../helpers/oracle.js'

const root = tempDir('qimg-oracle-resize-measure-')
after(() => root.cleanup())
const dir = join(root.path, 'work')
const at = (name: string): string => join(dir, name)

const quote = (arg: string): string => `'${arg.replaceAll("'", "'\\''")}'`
const MARK = '@@exited '

/** Runs several commands from one shell in the work directory: each one's exit code, stdout and stderr. */
let batches = 0

async function batch(commands: readonly string[][]): Promise<RunResult[]> {
  const err = `.stderr-${++batches}`
  const script = commands.map((c) => `${c.map(quote).join(' ')} 2>${err}; echo "${MARK}$?"; cat ${err}; echo "${MARK}"`).join('\n')
  const { stdout } = await run('sh', ['-c', script], { cwd: dir })
  const parts = stdout.split(new RegExp(`${MARK}(\\d*)\\n`))
  return commands.map((_, i) => ({ stdout: parts[4 * i]!, code: Number(parts[4 * i + 1]), stderr: parts[4 * i + 2]! }))
}

/** `qemu-img map --output=json` without host offsets, adjacent ranges of the same kind merged. */
function allocation(mapJson: string): string[] {
  const merged: Record<string, unknown>[] = []
  for (const entry of JSON.parse(mapJson) as Record<string, unknown>[]) {
    delete entry.offset
    const last = merged.at(-1)
    if (last && Object.keys(entry).every((k) => k === 'start' || k === 'length' || entry[k] === last[k])) last.length = (last.length as number) + (entry.length as number)
    else merged.push(entry)
  }
  return merged.map((e) => JSON.stringify(e))
}

let ready = false

before(async () => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  mkdirSync(dir)
  const script = [
    // resize sources
    'qemu-img create -q -f qcow2 src.qcow2 4M',
    "qemu-io -f qcow2 -c 'write -P 0x11 0 4M' src.qcow2",
    'qemu-img create -q -f qcow2 -o cluster_size=512 small-clusters.qcow2 1M',
    'qemu-img create -q -f qcow2 -o compat=0.10 v2snap.qcow2 4M',
    'qemu-img snapshot -c s1 v2snap.qcow2',
    'qemu-img create -q -f qcow2 v3snap.qcow2 4M',
    "qemu-io -f qcow2 -c 'write -P 0x12 1M 1M' v3snap.qcow2",
    'qemu-img snapshot -c s1 v3snap.qcow2',
    'qemu-img create -q -f raw src.raw 3M',
    "qemu-io -f raw -c 'write -P 0x21 0 1M' -c 'write -P 0x22 2M 1000k' src.raw",
    // measure sources
    'qemu-img create -q -f qcow2 data.qcow2 8M',
    "qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 100k' -c 'write -z 5M 1M' -c 'write -P 0 6M 64k' -c 'write -P 0x33 7M 1' data.qcow2",
    'qemu-img create -q -f qcow2 zeros.qcow2 4M',
    "qemu-io -f qcow2 -c 'write -z 0 4M' -c 'write -P 0x44 1M 4k' zeros.qcow2",
    'qemu-img create -q -f qcow2 -b data.qcow2 -F qcow2 top.qcow2',
    "qemu-io -f qcow2 -c 'write -P 0x55 2M 1M' top.qcow2",
    'cp data.qcow2 bitmaps.qcow2',
    'qemu-img bitmap --add bitmaps.qcow2 b1',
    'qemu-img bitmap --add -g 512k bitmaps.qcow2 bitmap-two',
    'qemu-img convert -O raw data.qcow2 data.raw',
    'qemu-img convert -O qcow2 -o compat=0.10 data.qcow2 v2.qcow2',
    'cp data.qcow2 snap.qcow2',
    'qemu-img snapshot -c s1 snap.qcow2',
    "qemu-io -f qcow2 -c 'write -P 0x66 0 4M' snap.qcow2",
  ].join(' >/dev/null && ')
  await runOk('sh', ['-c', script], { cwd: dir })
  ready = true
})

/** A resize both tools do on their own copy of `image`; `@` in the arguments is the copy. */
interface ResizeCase {
  name: string
  image?: string
  args: string[]
  /** preallocation=falloc: QEMU fallocate()s the new space (data); Node has no fallocate, qimg's stays a hole (zero). */
  falloc?: boolean
}

const qcow2Resize = (...args: string[]): string[] => ['resize', ...args.slice(0, -1), '@', args.at(-1)!]

const RESIZES: ResizeCase[] = [
  { name: 'grow', args: qcow2Resize('8M') },
  { name: 'grow by +1M', args: qcow2Resize('+1M') },
  { name: 'the same size', args: qcow2Resize('4M') },
  { name: '-q', args: qcow2Resize('-q', '5M') },
  { name: 'shrink without --shrink is refused', args: qcow2Resize('2M') },
  { name: 'shrink by -1M without --shrink is refused', args: qcow2Resize('-1M') },
  { name: 'shrink', args: qcow2Resize('--shrink', '2M') },
  { name: 'shrink by -1M', args: qcow2Resize('--shrink', '-1M') },
  { name: 'shrink inside a cluster', args: qcow2Resize('--shrink', '3000320') },
  { name: 'a size that is no multiple of 512', args: qcow2Resize('--shrink', '5000') },
  { name: 'size 0', args: qcow2Resize('--shrink', '0') },
  { name: 'shrinking below 0', args: qcow2Resize('--shrink', '-5M') },
  { name: 'a bad size', args: qcow2Resize('1Q') },
  { name: '--preallocation=metadata', args: qcow2Resize('--preallocation=metadata', '8M') },
  { name: '--preallocation=full', args: qcow2Resize('--preallocation=full', '+3M') },
  { name: '--preallocation=falloc', args: qcow2Resize('--preallocation=falloc', '8M'), falloc: true },
  { name: '--preallocation with a shrink is refused', args: qcow2Resize('--preallocation=full', '--shrink', '2M') },
  { name: '--preallocation without growing is refused', args: qcow2Resize('--preallocation=metadata', '4M') },
  { name: 'an unknown preallocation mode', args: qcow2Resize('--preallocation=bogus', '8M') },
  { name: 'a size the L1 table cannot address', image: 'small-clusters.qcow2', args: qcow2Resize('1T') },
  { name: 'v2 with snapshots: growing is refused', image: 'v2snap.qcow2', args: qcow2Resize('8M') },
  { name: 'v2 with snapshots: shrinking is refused', image: 'v2snap.qcow2', args: qcow2Resize('--shrink', '2M') },
  { name: 'v3 with snapshots: grow', image: 'v3snap.qcow2', args: qcow2Resize('8M') },
  { name: 'raw: grow', image: 'src.raw', args: qcow2Resize('-f', 'raw', '4M') },
  { name: 'raw: grow by +1M', image: 'src.raw', args: qcow2Resize('-f', 'raw', '+1M') },
  { name: 'raw: shrink', image: 'src.raw', args: qcow2Resize('-f', 'raw', '--shrink', '1M') },
  { name: 'raw: shrink by -512', image: 'src.raw', args: qcow2Resize('-f', 'raw', '--shrink', '-512') },
  { name: 'raw: shrink to a size that is no multiple of 512', image: 'src.raw', args: qcow2Resize('-f', 'raw', '--shrink', '5000') },
  { name: 'raw: shrink without --shrink is refused', image: 'src.raw', args: qcow2Resize('-f', 'raw', '1M') },
  { name: 'raw: --preallocation=full', image: 'src.raw', args: qcow2Resize('-f', 'raw', '--preallocation=full', '5M') },
  { name: 'raw: --preallocation=falloc', image: 'src.raw', args: qcow2Resize('-f', 'raw', '--preallocation=falloc', '5M'), falloc: true },
  { name: 'raw: --preallocation=metadata is refused', image: 'src.raw', args: qcow2Resize('-f', 'raw', '--preallocation=metadata', '5M') },
]

let copies = 0

/** Copies `image` twice and runs the resize with qemu-img on one copy and qimg on the other. */
async function resizeBoth(image: string, args: readonly string[]): Promise<{ theirs: RunResult; ours: RunResult; theirsFile: string; oursFile: string }> {
  const n = ++copies
  const ext = image.endsWith('.raw') ? 'raw' : 'qcow2'
  const theirsFile = at(`rq${n}.${ext}`)
  const oursFile = at(`ro${n}.${ext}`)
  copyFileSync(at(image), theirsFile)
  copyFileSync(at(image), oursFile)
  const [theirs, ours] = await Promise.all([
    run('qemu-img', args.map((a) => (a === '@' ? theirsFile : a))),
    qimgHere(args.map((a) => (a === '@' ? oursFile : a))),
  ])
  const name = (r: RunResult, file: string): RunResult => ({ ...r, stderr: r.stderr.replaceAll(file, '@').replaceAll('qemu-img', 'qimg') })
  return { theirs: name(theirs, theirsFile), ours: name(ours, oursFile), theirsFile, oursFile }
}

describe('qimg resize does what qemu-img resize does', { concurrency: 4 }, () => {
  for (const c of RESIZES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      const image = c.image ?? 'src.qcow2'
      const { theirs, ours, theirsFile, oursFile } = await resizeBoth(image, c.args)
      assert.deepEqual(ours, theirs, 'exit code, stdout and stderr')
      if (theirs.code !== 0) {
        assert.ok(readFileSync(oursFile).equals(readFileSync(at(image))), 'a refused resize leaves the image alone')
        return
      }
      if (image.endsWith('.raw')) {
        // A raw resize is a truncate (and zeros for full): the very same file.
        assert.equal(statSync(oursFile).size, statSync(theirsFile).size)
        assert.ok(readFileSync(oursFile).equals(readFileSync(theirsFile)), 'same bytes as qemu-img resize')
        return
      }
      const [check, compare, theirInfo, ourInfo, theirMap, ourMap] = await batch([
        ['qemu-img', 'check', oursFile],
        ['qemu-img', 'compare', theirsFile, oursFile],
        ['qemu-img', 'info', '--output=json', theirsFile],
        ['qemu-img', 'info', '--output=json', oursFile],
        ['qemu-img', 'map', '--output=json', theirsFile],
        ['qemu-img', 'map', '--output=json', oursFile],
      ])
      assert.equal(check!.code, 0, check!.stdout + check!.stderr)
      assert.match(check!.stdout, /No errors were found on the image\./)
      assert.equal(compare!.stdout, 'Images are identical.\n')
      const size = (json: string) => (JSON.parse(json) as { 'virtual-size': number })['virtual-size']
      assert.equal(size(ourInfo!.stdout), size(theirInfo!.stdout))
      // falloc: QEMU's new clusters are fallocated (data); qimg's are holes in the file (zero).
      if (!c.falloc) assert.deepEqual(allocation(ourMap!.stdout), allocation(theirMap!.stdout), 'allocation (host offsets aside)')
    })
  }

  it('shrink inside a cluster, then grow: qimg reads zeros where qemu-img 7.2 brings the old bytes back', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(ready)
    // Known, deliberate difference. QEMU 7.2 shrinks to 3000320 (not a cluster boundary) by
    // dropping the clusters past the end but keeps the whole last cluster as it was; growing
    // again makes its tail [3000320, 3014656) visible, with the bytes that were cut off.
    // qimg zeroes that tail when shrinking, so the grown area reads as zeros, as it should.
    const shrink = await resizeBoth('src.qcow2', qcow2Resize('--shrink', '3000320'))
    assert.equal(shrink.theirs.code, 0)
    assert.deepEqual(shrink.ours, shrink.theirs)
    const [theirs, ours] = await Promise.all([
      run('qemu-img', ['resize', shrink.theirsFile, '4M']),
      qimgHere(['resize', shrink.oursFile, '4M']),
    ])
    assert.equal(theirs.code, 0, theirs.stderr)
    assert.deepEqual(ours, theirs)
    const tail = ['3000320', String(3014656 - 3000320)]
    const [check, oursTail, theirsTail, oursRest, compare] = await batch([
      ['qemu-img', 'check', shrink.oursFile],
      ['qemu-io', '-f', 'qcow2', '-c', `read -P 0 ${tail.join(' ')}`, shrink.oursFile],
      ['qemu-io', '-f', 'qcow2', '-c', `read -P 0x11 ${tail.join(' ')}`, shrink.theirsFile],
      ['qemu-io', '-f', 'qcow2', '-c', 'read -P 0x11 0 3000320', '-c', 'read -P 0 3014656 1179648', shrink.oursFile],
      ['qemu-img', 'compare', shrink.theirsFile, shrink.oursFile],
    ])
    assert.equal(check!.code, 0, check!.stdout)
    assert.doesNotMatch(oursTail!.stdout, /Pattern verification failed/, 'qimg: zeros after the old end')
    assert.doesNotMatch(theirsTail!.stdout, /Pattern verification failed/, 'qemu-img 7.2: the old bytes come back')
    assert.doesNotMatch(oursRest!.stdout, /Pattern verification failed/, 'qimg: the data before, zeros after')
    assert.equal(compare!.stdout, 'Content mismatch at offset 3000320!\n', 'the only difference is that tail')
  })

  it('raw: a file whose size is no multiple of 512 (its size counts in whole sectors)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(ready)
    copyFileSync(at('src.raw'), at('odd.raw'))
    await runOk('truncate', ['-s', '5000', at('odd.raw')])
    const { theirs, ours, theirsFile, oursFile } = await resizeBoth('odd.raw', ['resize', '-f', 'raw', '@', '+1M'])
    assert.deepEqual(ours, theirs)
    assert.equal(statSync(oursFile).size, statSync(theirsFile).size)
    assert.ok(readFileSync(oursFile).equals(readFileSync(theirsFile)))
  })
})

// ---------------------------------------------------------------------------------------------
// measure

const SIZES = ['0', '1', '1000', '64k', '1M', '1G', '1T']
const TARGET_OPTIONS = ['', 'cluster_size=512', 'cluster_size=2M', 'refcount_bits=1', 'refcount_bits=64', 'extended_l2=on', 'preallocation=metadata', 'preallocation=falloc', 'preallocation=full', 'compat=0.10', 'cluster_size=16k,extended_l2=on,refcount_bits=4']
const SOURCES = ['data.qcow2', 'zeros.qcow2', 'top.qcow2', 'bitmaps.qcow2', 'data.raw', 'v2.qcow2']
const SOURCE_OPTIONS = ['', 'cluster_size=512', 'cluster_size=2M', 'refcount_bits=1', 'extended_l2=on', 'preallocation=metadata', 'preallocation=full', 'compat=0.10', 'backing_file=data.qcow2,backing_fmt=qcow2']

const withOptions = (options: string): string[] => (options ? ['-o', options] : [])

/** Every measure both tools run (file names relative to the work directory). */
const MEASURES: string[][] = [
  ...SIZES.flatMap((size) => TARGET_OPTIONS.map((o) => ['measure', '-O', 'qcow2', ...withOptions(o), '--size', size])),
  ...SIZES.flatMap((size) => [['measure', '--size', size], ['measure', '--output=json', '-O', 'qcow2', '--size', size], ['measure', '--output=json', '-O', 'raw', '--size', size]]),
  ...SOURCES.flatMap((source) => [
    ...SOURCE_OPTIONS.map((o) => ['measure', '-O', 'qcow2', ...withOptions(o), source]),
    ['measure', '--output=json', '-O', 'qcow2', source],
    ['measure', '--output=json', '-O', 'qcow2', '-o', 'compat=0.10', source],
    ['measure', source],
    ['measure', '-O', 'raw', '--output=json', source],
  ]),
  ['measure', '-f', 'raw', '-O', 'qcow2', 'data.raw'],
  ['measure', '-O', 'qcow2', '-l', 's1', 'snap.qcow2'],
  ['measure', '-O', 'qcow2', 'snap.qcow2'],
  ['measure', '-O', 'qcow2', '-o', 'cluster_size=4k', '-o', 'cluster_size=8k', 'data.qcow2'],
  // refused
  ['measure', '--size', '1G', 'data.qcow2'],
  ['measure'],
  ['measure', '-O', 'qcow2'],
  ['measure', '--size', '1Q'],
  ['measure', '--size', '-5'],
  ['measure', '--size', '1G', '-l', 's1'],
  ['measure', 'data.qcow2', 'data.raw'],
  ['measure', '--size', '1G', '--output=xml'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'foo=bar'],
  ['measure', '--size', '1G', '-O', 'raw', '-o', 'cluster_size=4k'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'compat=v3'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'compat=0.10,refcount_bits=8'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'extended_l2=on,cluster_size=4k'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'cluster_size=1000'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'refcount_bits=3'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'preallocation=bogus'],
  ['measure', '--size', '1G', '-O', 'qcow2', '-o', 'lazy_refcounts=maybe'],
  ['measure', '--size', '1T', '-O', 'qcow2', '-o', 'cluster_size=512'],
]

/** qemu-img's answers, all computed by one shell (before the comparisons). */
let oracle: RunResult[] = []

describe('qimg measure prints what qemu-img measure prints', () => {
  before(async () => {
    if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
    oracle = await batch(MEASURES.map((args) => ['qemu-img', ...args]))
  })

  MEASURES.forEach((args, i) => {
    it(args.slice(1).join(' ') || '(no arguments)', async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      const theirs = oracle[i]!
      const ours = await qimgHere(args.map((a) => (/\.(qcow2|raw)$/.test(a) && !a.includes('=') ? at(a) : a)))
      assert.equal(ours.code, theirs.code, `exit code (qimg: ${ours.stderr})`)
      assert.equal(ours.stdout, theirs.stdout)
      assert.equal(ours.stderr.replaceAll(dir + '/', ''), theirs.stderr.replaceAll('qemu-img', 'qimg'))
    })
  })
})
