// Oracle: `qimg measure -O qcow2` with encryption options, and `-O luks`, against qemu-img 7.2.
// qcow2_measure adds a LUKS target's header, rounded up to whole clusters, to both figures; it
// ignores encrypt.format=aes (and encryption=on, other values, stray encrypt.* keys); for LUKS it
// formats a header in memory, so it wants encrypt.key-secret and its secret, and runs its PBKDF2
// benchmark (~1 s of CPU, and now and then "Unable to get accurate CPU usage" on a busy machine).
// So: every refusal and ignored option is compared directly (those fail before the benchmark);
// one successful LUKS run per master key length (16, 32, 48, 64 bytes) is compared directly and
// gives QEMU's header length for that key length; the matrix of sizes, cluster sizes, sources
// and ciphers is then checked against qemu-img's unencrypted figures plus that header length,
// rounded to the cluster size — the sum qcow2_measure makes.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { hasTool, needTools, run, runOk, tempDir, qimgInProcess, type RunResult } from '../helpers/oracle.js'
import { pool } from './images.js'

const root = tempDir('qimg-oracle-measure-encrypt-')
after(() => root.cleanup())
const dir = root.path

const SECRET = ['--object', 'secret,id=sec0,data=s3cr3t']
const LUKS = 'encrypt.format=luks,encrypt.key-secret=sec0'
const qcow2 = (...args: string[]): string[] => ['measure', '-O', 'qcow2', ...args]
const options = (...parts: string[]): string[] => {
  const text = parts.filter(Boolean).join(',')
  return text ? ['-o', text] : []
}

/** qemu-img in the work directory; a LUKS success is retried when its benchmark reads no CPU time. */
async function qemuImg(args: readonly string[]): Promise<RunResult> {
  for (let attempt = 1; ; attempt++) {
    const r = await run('qemu-img', args, { cwd: dir })
    if (r.code === 0 || attempt === 8 || !r.stderr.includes('Unable to get accurate CPU usage')) return r
  }
}

/** qimg in this process, file operands made absolute, its messages made relative again. */
async function qimg(args: readonly string[]): Promise<RunResult> {
  const r = await qimgInProcess(args.map((a) => (/^[\w-]+\.(qcow2|raw)$/.test(a) ? join(dir, a) : a)))
  return { ...r, stderr: r.stderr.replaceAll(dir + '/', '').replaceAll('qimg', 'qemu-img') }
}

const assertSame = (ours: RunResult, theirs: RunResult, what: string): void => {
  assert.equal(ours.code, theirs.code, `${what}: exit code (qimg: ${ours.stderr})`)
  assert.equal(ours.stdout, theirs.stdout, what)
  assert.equal(ours.stderr, theirs.stderr, what)
}

// ---------------------------------------------------------------------------------------------
// Refused and ignored encryption options: compared directly.

const DIRECT_CHEAP: string[][] = [
  // ignored: no header space
  qcow2('--size', '1G', '-o', 'encrypt.format=aes'),
  qcow2(...SECRET, '--size', '1G', '-o', 'encrypt.format=aes,encrypt.key-secret=sec0,cluster_size=4k'),
  qcow2('--size', '1G', '-o', 'encrypt.format=aes,encrypt.key-secret=nosuch,encrypt.cipher-alg=foo'),
  qcow2('--size', '64M', '-o', 'encryption=on'),
  qcow2('--size', '64M', '-o', 'encryption=on,encrypt.format=aes'),
  qcow2('--size', '64M', '-o', 'encryption=off'),
  qcow2('--size', '64M', '-o', 'encrypt.format=foo'),
  qcow2('--size', '64M', '-o', 'encrypt.format=LUKS,encrypt.key-secret=sec0'),
  qcow2('--size', '64M', '-o', 'encrypt.key-secret=sec0'),
  qcow2('--size', '64M', '-o', 'encrypt.cipher-alg=aes-128,encrypt.iter-time=5'),
  qcow2('--output=json', '-o', 'encrypt.format=aes', 'data.qcow2'),
  // refused before anything is measured
  qcow2('--size', '1G', '-o', 'encrypt.format=luks'),
  qcow2('--size', '1P', '-o', 'encrypt.format=luks,cluster_size=512'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.cipher-alg=aes-128'),
  qcow2('--size', '1G', '-o', 'encryption=on,encrypt.format=luks'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.cipher-alg=3des'),
  qcow2('--size', '1G', '-o', LUKS),
  qcow2(...SECRET, '--size', '1P', '-o', 'encrypt.format=luks,encrypt.key-secret=nosuch,cluster_size=512'),
  qcow2(...SECRET, '--size', '1G', '-o', 'encrypt.format=luks,encrypt.key-secret=nosuch,encrypt.cipher-alg=cast5-128'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.cipher-alg=foo'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.cipher-alg=des-rfb'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.cipher-mode=foo'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.ivgen-alg=foo'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.ivgen-hash-alg=foo'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.hash-alg=foo'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.iter-time=abc'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,encrypt.bogus=1'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,cluster_size=1000'),
  qcow2('--size', '1G', '-o', 'encrypt.format=luks,compat=0.10,refcount_bits=8'),
  ['measure', '--size', '1G', '-O', 'raw', '-o', 'encrypt.format=luks'],
  qcow2('-o', 'encrypt.format=luks', 'data.qcow2'),
  qcow2('--object', 'secret,id=sec0', '--size', '1G'),
  // refused once the secret is there
  qcow2(...SECRET, '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=3des`),
  qcow2(...SECRET, '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=des,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha512`),
  qcow2(...SECRET, '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=cast5-128`),
  qcow2(...SECRET, '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv`),
  qcow2(...SECRET, '--size', '1G', '-o', `${LUKS},encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha512`),
  qcow2(...SECRET, '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=twofish-256,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha512`),
  qcow2('--object', 'secret,id=sec0,data=/w==,format=base64', '--size', '1G', '-o', LUKS),
  qcow2('--object', 'secret,id=sec0,data=AA==,format=base64', '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=3des`),
  qcow2('--object', 'secret,id=sec0,data=4pyT,format=base64', '--size', '1G', '-o', `${LUKS},encrypt.cipher-alg=3des`),
  // -O luks (block_crypto_measure): the same checks without the prefix, in the same order
  ['measure', '-O', 'luks', '--size', '1G'],
  ['measure', '-O', 'luks', '--size', '1G', '-o', 'cipher-alg=foo'],
  ['measure', '-O', 'luks', '--size', '1G', '-o', 'cipher-alg=des'],
  ['measure', '-O', 'luks', '--size', '1G', '-o', 'iter-time=abc'],
  ['measure', '-O', 'luks', '--size', '1G', '-o', 'encrypt.format=luks'],
  ['measure', ...SECRET, '-O', 'luks', '--size', '1G', '-o', 'key-secret=nosuch'],
  ['measure', ...SECRET, '-O', 'luks', '--size', '1G', '-o', 'key-secret=sec0,cipher-alg=3des'],
  ['measure', ...SECRET, '-O', 'luks', '--size', '1G', '-o', 'key-secret=sec0,cipher-alg=cast5-128'],
  ['measure', '--object', 'secret,id=sec0,data=/w==,format=base64', '-O', 'luks', '--size', '1G', '-o', 'key-secret=sec0'],
  // and two that succeed: the size as it is (no rounding), and a source's virtual size
  ['measure', ...SECRET, '-O', 'luks', '--size', '1000', '-o', 'key-secret=sec0,iter-time=1'],
  ['measure', ...SECRET, '--output=json', '-O', 'luks', '-o', 'key-secret=sec0,cipher-alg=aes-128,iter-time=1', 'data.qcow2'],
]

// ---------------------------------------------------------------------------------------------
// Successful LUKS measures: one per master key length, compared directly (QEMU's expensive part).

interface KeyGroup {
  /** Master key bytes (the header length depends on nothing else). */
  keyBytes: number
  /** The case qemu-img runs: cipher options, then the rest of the command line. */
  oracle: { cipher: string; args: string[] }
  /** More ciphers with this key length (hash, IV generator and iter-time must not matter). */
  more: string[]
}

const GROUPS: KeyGroup[] = [
  {
    keyBytes: 64,
    oracle: { cipher: '', args: ['--size', '1G', '-o', 'cluster_size=512'] },
    more: ['encrypt.cipher-alg=serpent-256', 'encrypt.cipher-alg=twofish-256,encrypt.hash-alg=sha512,encrypt.iter-time=0', 'encrypt.ivgen-alg=essiv'],
  },
  {
    keyBytes: 48,
    oracle: { cipher: 'encrypt.cipher-alg=aes-192', args: ['--output=json', '-o', 'cluster_size=1k', 'data.qcow2'] },
    more: ['encrypt.cipher-alg=twofish-192,encrypt.ivgen-alg=plain', 'encrypt.cipher-alg=serpent-192,encrypt.hash-alg=ripemd160'],
  },
  {
    keyBytes: 32,
    oracle: { cipher: 'encrypt.cipher-alg=aes-128', args: ['--output=json', '--size', '100M', '-o', 'cluster_size=4k,preallocation=full'] },
    more: ['encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv', 'encrypt.cipher-alg=serpent-128,encrypt.hash-alg=sha1', 'encrypt.cipher-alg=twofish-256,encrypt.cipher-mode=ctr', 'encrypt.cipher-alg=aes-256,encrypt.cipher-mode=ecb'],
  },
  {
    keyBytes: 16,
    oracle: { cipher: 'encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc', args: ['-o', 'cluster_size=2k', 'data.raw'] },
    more: ['encrypt.cipher-alg=aes-128,encrypt.cipher-mode=ecb', 'encrypt.cipher-alg=twofish-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=md5'],
  },
]

/** `args` (after `measure -O qcow2`) with the secret and the LUKS options (and `cipher`) added. */
function withLuks(args: readonly string[], cipher: string): string[] {
  const i = args.indexOf('-o')
  if (i < 0) return [...SECRET, '-O', 'qcow2', '-o', [LUKS, cipher].filter(Boolean).join(','), ...args]
  return [...SECRET, '-O', 'qcow2', ...args.slice(0, i + 1), [args[i + 1], LUKS, cipher].filter(Boolean).join(','), ...args.slice(i + 2)]
}

/** The figures of a measure's output (human or json), by name. */
function figures(stdout: string): { required: number; fullyAllocated: number } {
  const number = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? Number.NaN)
  return {
    required: number(/(?:required size: |"required": )(\d+)/),
    fullyAllocated: number(/(?:fully allocated size: |"fully-allocated": )(\d+)/),
  }
}

/** A measure's output with `bytes` added to both figures. */
const plus = (stdout: string, bytes: number): string =>
  stdout.replace(/(required size: |fully allocated size: |"required": |"fully-allocated": )(\d+)/g, (_, label: string, n: string) => label + (Number(n) + bytes))

// ---------------------------------------------------------------------------------------------
// The matrix: qemu-img's unencrypted figures + the header rounded up to the cluster size.

const SIZES = ['0', '1000', '64k', '1G', '2T']
const CLUSTERS = ['512', '4k', '64k', '2M']
const EXTRAS = ['', 'preallocation=full,refcount_bits=1', 'extended_l2=on']
const SOURCES = ['data.qcow2', 'data.raw']

/** Each cell's arguments after `measure -O qcow2`. */
const MATRIX: string[][] = [
  ...SIZES.flatMap((size) => CLUSTERS.flatMap((cs) => EXTRAS.map((extra, i) =>
    [...(i === 1 ? ['--output=json'] : []), '--size', size, ...options(`cluster_size=${cs}`, extra)]))),
  ...SOURCES.flatMap((source) => CLUSTERS.flatMap((cs) => [
    ['-o', `cluster_size=${cs}`, source],
    ['--output=json', '-o', `cluster_size=${cs},backing_file=data.qcow2,backing_fmt=qcow2`, source],
  ])),
]

const UNITS: Record<string, number> = { '': 1, k: 1024, M: 1024 * 1024 }
const clusterSize = (args: readonly string[]): number => {
  const match = /cluster_size=(\d+)([kM]?)/.exec(args.join(' '))
  return match ? Number(match[1]) * UNITS[match[2]!]! : 65536
}

let ready = false
let cheap: RunResult[] = []
let plain: RunResult[] = []
/** qemu-img's LUKS runs and the same commands without encryption, by group. */
let luks: { encrypted: RunResult; unencrypted: RunResult }[] = []

before(async () => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', 'data.qcow2', '8M'], { cwd: dir })
  await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 3M 100k', '-c', 'write -z 5M 1M', '-c', 'write -P 0x33 7M 1', 'data.qcow2'], { cwd: dir })
  await runOk('qemu-img', ['create', '-q', '-f', 'raw', 'data.raw', '3M'], { cwd: dir })
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 1M', '-c', 'write -P 0x22 2M 1000k', 'data.raw'], { cwd: dir })
  // The expensive LUKS runs two at a time, beside the cheap ones.
  const expensive = pool(2, GROUPS.map(({ oracle }) => async () => ({
    encrypted: await qemuImg(['measure', ...withLuks(oracle.args, [oracle.cipher, 'encrypt.iter-time=1'].filter(Boolean).join(','))]),
    unencrypted: await qemuImg(qcow2(...oracle.args)),
  })))
  expensive.catch(() => undefined) // awaited below
  cheap = await pool(2, DIRECT_CHEAP.map((args) => () => qemuImg(args)))
  plain = await pool(2, MATRIX.map((args) => () => qemuImg(qcow2(...args))))
  luks = await expensive
  ready = true
})

describe('qimg measure refuses and ignores encryption options as qemu-img does', () => {
  DIRECT_CHEAP.forEach((args, i) => {
    it(args.slice(1).join(' '), async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      assertSame(await qimg(args), cheap[i]!, args.join(' '))
    })
  })
})

/** QEMU's LUKS header length by master key length, from the direct runs (clusters ≤ 4k). */
function headerLengths(): Map<number, number> {
  const lengths = new Map<number, number>()
  GROUPS.forEach((group, i) => {
    const { encrypted, unencrypted } = luks[i]!
    assert.equal(encrypted.code, 0, `qemu-img: ${encrypted.stderr}`)
    assert.equal(unencrypted.code, 0, `qemu-img: ${unencrypted.stderr}`)
    const a = figures(encrypted.stdout)
    const b = figures(unencrypted.stdout)
    assert.equal(a.required - b.required, a.fullyAllocated - b.fullyAllocated)
    lengths.set(group.keyBytes, a.required - b.required)
  })
  return lengths
}

describe('qimg measure adds the LUKS header as qemu-img does', () => {
  GROUPS.forEach((group, i) => {
    it(`${group.keyBytes}-byte master key: ${group.oracle.cipher || 'aes-256 xts'} ${group.oracle.args.join(' ')}`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      const args = ['measure', ...withLuks(group.oracle.args, [group.oracle.cipher, 'encrypt.iter-time=1'].filter(Boolean).join(','))]
      assertSame(await qimg(args), luks[i]!.encrypted, args.join(' '))
    })
  })

  MATRIX.forEach((args, i) => {
    it(`-O qcow2 ${args.join(' ')} + LUKS`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(ready)
      const lengths = headerLengths()
      const theirs = plain[i]!
      const cs = clusterSize(args)
      for (const group of GROUPS) {
        const payload = Math.ceil(lengths.get(group.keyBytes)! / cs) * cs
        for (const cipher of [group.oracle.cipher, ...group.more]) {
          const luksArgs = ['measure', ...withLuks(args, cipher)]
          const expected = { ...theirs, stdout: theirs.code === 0 ? plus(theirs.stdout, payload) : theirs.stdout }
          assertSame(await qimg(luksArgs), expected, luksArgs.join(' '))
        }
      }
    })
  })
})
