// Oracle: `qimg io` prints qemu-io's transcript and leaves the image qemu-io leaves; `qimg bench`
// prints qemu-img bench's lines and (with -w) writes what it writes. Each script runs with
// qemu-io / qemu-img on one copy of an image and with qimg on another.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { hasTool, needTools, qimg, run, runOk, tempDir, type RunResult, qimgInProcess as qimgHere } from '../helpers/oracle.js'
import { prng } from './images.js'

const root = tempDir('qimg-oracle-io-')
after(() => root.cleanup())
const dir = join(root.path, 'work')
const at = (name: string): string => join(dir, name)

/** The second line of each report is timing: "64 KiB, 1 ops; 00.00 sec (…/sec and … ops/sec)". */
const withoutTimes = (transcript: string): string => transcript.replace(/^\S.*ops; .*$/gm, '<statistics>')

let ready = false

before(async () => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  mkdirSync(dir)
  const random = prng(7)
  writeFileSync(at('pattern.bin'), Uint8Array.from({ length: 70000 }, () => Math.floor(random() * 256)))
  const script = [
    'qemu-img create -q -f qcow2 base.qcow2 4M',
    "qemu-io -f qcow2 -c 'write -P 0x11 0 4M' base.qcow2",
    'qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over-backing.qcow2',
    'qemu-img create -q -f qcow2 -o cluster_size=4k plain-4k.qcow2 2M',
    'qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 2M',
    "qemu-io -f qcow2 -c 'write -P 0x22 0 2M' v2.qcow2",
    'qemu-img create -q -f qcow2 -o extended_l2=on -b base.qcow2 -F qcow2 extl2.qcow2',
    'qemu-img create -q -f raw plain.raw 2M',
    'qemu-img create -q -f qcow2 bench.qcow2 4M',
    "qemu-io -f qcow2 -c 'write -P 0x33 1M 1M' bench.qcow2",
    'qemu-img create -q -f raw bench.raw 1M',
  ].join(' >/dev/null && ')
  await runOk('sh', ['-c', script], { cwd: dir })
  ready = true
})

/** The commands of the script (FILE is pattern.bin). */
const SCRIPT = (file: string): string[] => [
  'write -P 0xab 0 64k',
  'write -P 0xcd 65000 3000', // unaligned, across a cluster boundary
  'write -z 128k 64k',
  'write -z -u 192k 64k',
  'write -z 300000 5000', // unaligned zeroes
  'read -P 0xab 0 64k',
  'read -P 0xab 64k 4k', // a mismatch: the transcript says so and the exit code is 1
  'read -P 0 128k 128k',
  'read -q -P 0x11 1M 512',
  'read -v 65530 40',
  'discard 1M 128k',
  'discard 1200000 10000', // unaligned
  'flush',
  'map',
  `write -s ${file} 2M 65536`,
  `write -s ${file} 3000000 70000`,
  'read -v 3069990 20',
  'write -q -P 0x5a 4190000 4304',
  'read 4M 512', // past the end: refused
  'write -P 1 4194000 1000',
  'map',
]

interface Transcript {
  name: string
  image: string
  format?: string
  script: (file: string) => string[]
  /** Why allocation may differ (then only the contents are compared), when it may. */
  allocationDiffers?: string
}

const TRANSCRIPTS: Transcript[] = [
  { name: 'qcow2 over a backing file', image: 'over-backing.qcow2', script: SCRIPT },
  { name: 'qcow2 with extended L2 entries over a backing file', image: 'extl2.qcow2', script: SCRIPT },
  {
    name: 'qcow2 with 4k clusters',
    image: 'plain-4k.qcow2',
    script: (f) => SCRIPT(f).filter((c) => !/ (3000000|3069990|419\d{4}|4M) /.test(c)),
    // `write -z 300000 5000` covers parts of two unallocated clusters. QEMU (qcow2_co_pwrite_zeroes)
    // sees that the rest of each reads as zero (block status) and makes them zero clusters; qimg's
    // writer writes real zeros for the unaligned parts, allocating two data clusters. Same content.
    allocationDiffers: 'unaligned zero writes on unallocated clusters',
  },
  { name: 'qcow2 v2 (no zero clusters)', image: 'v2.qcow2', script: (f) => SCRIPT(f).filter((c) => !/ (3000000|3069990|419\d{4}|4M) /.test(c)) },
  { name: 'raw', image: 'plain.raw', format: 'raw', script: (f) => SCRIPT(f).filter((c) => !/ (3000000|3069990|419\d{4}|4M) /.test(c)) },
]

let copies = 0

describe('qimg io prints what qemu-io prints and writes what it writes', { concurrency: 3 }, () => {
  for (const c of TRANSCRIPTS) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      const n = ++copies
      const ext = c.format === 'raw' ? 'raw' : 'qcow2'
      const theirsFile = at(`io-q${n}.${ext}`)
      const oursFile = at(`io-o${n}.${ext}`)
      copyFileSync(at(c.image), theirsFile)
      copyFileSync(at(c.image), oursFile)
      const commands = c.script(at('pattern.bin')).flatMap((command) => ['-c', command])
      const format = ['-f', c.format ?? 'qcow2']
      const [theirs, ours] = await Promise.all([
        run('qemu-io', [...format, ...commands, theirsFile]),
        qimgHere(['io', ...format, ...commands, oursFile]),
      ])
      assert.ok(theirs.stdout.includes('Pattern verification failed'), 'the script has a failing read')
      assert.equal(withoutTimes(ours.stdout), withoutTimes(theirs.stdout), 'transcript')
      assert.equal(ours.stderr, theirs.stderr)
      assert.equal(ours.code, theirs.code, 'exit code')
      if (c.format === 'raw') {
        assert.ok(readFileSync(oursFile).equals(readFileSync(theirsFile)), 'the same raw file')
      } else {
        const strict = c.allocationDiffers === undefined ? ['-s'] : []
        const [check, compare] = await Promise.all([run('qemu-img', ['check', oursFile]), run('qemu-img', ['compare', ...strict, theirsFile, oursFile])])
        assert.equal(check.code, 0, check.stdout + check.stderr)
        assert.equal(compare.stdout, 'Images are identical.\n', `qemu-img compare ${strict.join('')} (contents${strict.length ? ' and allocation' : ''}): ${compare.stderr}`)
      }
    })
  }

  it('the qimg binary: a short script, as qemu-io', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(ready)
    copyFileSync(at('over-backing.qcow2'), at('bin-q.qcow2'))
    copyFileSync(at('over-backing.qcow2'), at('bin-o.qcow2'))
    const commands = ['-c', 'write -P 0x42 100k 8k', '-c', 'read -P 0x42 100k 8k', '-c', 'map']
    const [theirs, ours] = await Promise.all([
      run('qemu-io', ['-f', 'qcow2', ...commands, 'bin-q.qcow2'], { cwd: dir }),
      qimg(['io', '-f', 'qcow2', ...commands, 'bin-o.qcow2'], { cwd: dir }),
    ])
    assert.equal(theirs.code, 0, theirs.stderr)
    assert.equal(withoutTimes(ours.stdout), withoutTimes(theirs.stdout))
    assert.equal(ours.code, 0)
    const compare = await run('qemu-img', ['compare', '-s', 'bin-q.qcow2', 'bin-o.qcow2'], { cwd: dir })
    assert.equal(compare.stdout, 'Images are identical.\n')
  })
})

/** A bench both tools run; `@` is the image (a fresh copy of `image` for each). */
interface Bench {
  name: string
  args: string[]
  image?: string
  fails?: boolean
}

const BENCHES: Bench[] = [
  { name: 'reads', args: ['-c', '2000', '-d', '16', '@'] },
  { name: 'reads: -s -S -o', args: ['-c', '200', '-d', '4', '-s', '8k', '-S', '16k', '-o', '64k', '@'] },
  { name: 'writes', args: ['-w', '-c', '1500', '@'] },
  { name: 'writes: -c -d -s -S -o --pattern', args: ['-w', '-c', '300', '-d', '4', '-s', '8k', '-S', '12k', '-o', '1000k', '--pattern', '0x5a', '@'] },
  { name: 'writes wrapping at the end of the image', args: ['-w', '-c', '10', '-d', '1', '-s', '1M', '-S', '3M', '--pattern', '7', '@'] },
  { name: 'writes with a flush interval', args: ['-w', '-c', '64', '-d', '4', '--flush-interval', '8', '-s', '512', '@'] },
  { name: 'numbers in octal and hexadecimal, -S 0', args: ['-w', '-c', '0x20', '-d', '010', '-S', '0', '--pattern', '077', '@'] },
  { name: 'no requests', args: ['-c', '0', '@'] },
  { name: 'a raw image', args: ['-f', 'raw', '-w', '-c', '100', '-s', '2k', '--pattern', '1', '@'], image: 'bench.raw' },
  { name: 'a request past the end', args: ['-c', '2000', '-s', '3k', '@'], fails: true },
  { name: 'a buffer larger than the image', args: ['-c', '1', '-s', '8M', '@'], fails: true },
  { name: 'a bad pattern byte', args: ['-w', '--pattern', '300', '@'], fails: true },
  { name: 'a flush interval below the depth', args: ['-w', '--flush-interval', '2', '-d', '4', '@'], fails: true },
  { name: 'a flush interval without -w', args: ['--flush-interval', '64', '@'], fails: true },
  { name: 'a bad offset', args: ['-o', '1Q', '@'], fails: true },
  { name: 'aio=native without cache.direct', args: ['-n', '-c', '2', '@'], fails: true },
]

describe('qimg bench runs what qemu-img bench runs', { concurrency: 3 }, () => {
  for (const c of BENCHES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      const n = ++copies
      const image = c.image ?? 'bench.qcow2'
      const theirsFile = at(`b-q${n}-${image}`)
      const oursFile = at(`b-o${n}-${image}`)
      copyFileSync(at(image), theirsFile)
      copyFileSync(at(image), oursFile)
      const [theirs, ours] = await Promise.all([
        run('qemu-img', ['bench', ...c.args.map((a) => (a === '@' ? theirsFile : a))]),
        qimgHere(['bench', ...c.args.map((a) => (a === '@' ? oursFile : a))]),
      ])
      const sending = (r: RunResult) => r.stdout.split('\n').filter((line) => line.startsWith('Sending')).join('\n')
      assert.equal(sending(ours), sending(theirs), '"Sending …" lines')
      assert.equal(ours.code, theirs.code, `exit code (qimg: ${ours.stderr})`)
      assert.equal(ours.stderr.replaceAll(oursFile, '@'), theirs.stderr.replaceAll(theirsFile, '@').replaceAll('qemu-img', 'qimg'))
      if (c.fails) {
        assert.equal(theirs.code, 1)
        return
      }
      assert.equal(theirs.code, 0, theirs.stderr)
      assert.match(theirs.stdout, /^Run completed in \d+\.\d{3} seconds\.$/m)
      assert.match(ours.stdout, /^Run completed in \d+\.\d{3} seconds\.$/m)
      const [check, compare] = await Promise.all([
        image.endsWith('.qcow2') ? run('qemu-img', ['check', oursFile]) : undefined,
        run('qemu-img', ['compare', '-f', c.image?.endsWith('.raw') ? 'raw' : 'qcow2', '-F', c.image?.endsWith('.raw') ? 'raw' : 'qcow2', theirsFile, oursFile]),
      ])
      if (check) assert.equal(check.code, 0, check.stdout + check.stderr)
      assert.equal(compare.stdout, 'Images are identical.\n', 'the same writes as qemu-img bench')
    })
  }
})
