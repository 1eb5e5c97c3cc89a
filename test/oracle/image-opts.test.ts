// Oracle: --image-opts for every command qimg shares with qemu-img 7.2 (check, compare, convert,
// info, map, measure, snapshot, rebase, resize, commit, amend, bench). Each command runs on twin
// directories (qemu-img in one, qimg in the other, the same relative names) with the operand given
// as "driver=qcow2,file.filename=…"; exit codes, output and the resulting images must agree. Then
// `check` of a LUKS image through --image-opts and --object secret, right, wrong and missing.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, qimg, run, runOk, tempDir, type RunResult } from '../helpers/oracle.js'

const root = tempDir('qimg-oracle-image-opts-')
after(() => root.cleanup())

const opts = (file: string, more = ''): string => `driver=qcow2,file.filename=${file}${more}`

/** Twin directories holding base.qcow2 (2 MiB, data in the first MiB) and top.qcow2 over it. */
async function twins(name: string): Promise<[string, string]> {
  const dirs = ['q', 'i'].map((who) => join(root.path, name, who)) as [string, string]
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true })
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '2M'])
    await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', join(dir, 'base.qcow2')])
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')])
    await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xa5 512k 64k', join(dir, 'top.qcow2')])
  }
  return dirs
}

/** What a case leaves behind, read with qemu-img (the same in both directories). */
const infoOf = async (dir: string, file: string): Promise<string> => {
  const info = JSON.parse(await runOk('qemu-img', ['info', '--output=json', '-U', join(dir, file)])) as Record<string, unknown>
  delete info['filename']
  delete info['actual-size']
  delete info['full-backing-filename']
  delete info['dirty-flag']
  for (const s of (info['snapshots'] ?? []) as Record<string, unknown>[]) for (const k of ['date-sec', 'date-nsec']) delete s[k]
  return JSON.stringify(info)
}

interface Case {
  name: string
  args: string[]
  /** qemu-img's exit code (0 unless said). */
  code?: number
  /** Output that varies between runs (timings): compare only the first line. */
  firstLine?: boolean
  /** The state to compare afterwards. */
  after?: (dir: string) => Promise<string>
}

const CASES: Case[] = [
  { name: 'check', args: ['check', '--image-opts', opts('top.qcow2')] },
  { name: 'check --output=json', args: ['check', '--output=json', '--image-opts', opts('top.qcow2')] },
  { name: 'compare (differing)', args: ['compare', '--image-opts', opts('top.qcow2'), opts('base.qcow2')], code: 1 },
  { name: 'compare (the same)', args: ['compare', '--image-opts', opts('base.qcow2'), opts('base.qcow2')] },
  { name: 'convert', args: ['convert', '--image-opts', opts('top.qcow2'), '-O', 'raw', 'out.raw'], after: async (dir) => readFileSync(join(dir, 'out.raw')).toString('hex') },
  { name: 'info', args: ['info', '--image-opts', opts('top.qcow2')] },
  { name: 'map', args: ['map', '--output=json', '--image-opts', opts('top.qcow2')] },
  { name: 'measure', args: ['measure', '-O', 'qcow2', '--image-opts', opts('top.qcow2')] },
  { name: 'snapshot', args: ['snapshot', '-c', 'one', '--image-opts', opts('base.qcow2')], after: (dir) => infoOf(dir, 'base.qcow2') },
  { name: 'rebase', args: ['rebase', '-u', '-b', '', '--image-opts', opts('top.qcow2')], after: (dir) => infoOf(dir, 'top.qcow2') },
  { name: 'rebase (safe, relative backing name)', args: ['rebase', '-b', 'base.qcow2', '-F', 'qcow2', '--image-opts', opts('top.qcow2')], after: (dir) => infoOf(dir, 'top.qcow2') },
  { name: 'resize', args: ['resize', '--image-opts', opts('base.qcow2'), '4M'], after: (dir) => infoOf(dir, 'base.qcow2') },
  { name: 'commit', args: ['commit', '--image-opts', opts('top.qcow2')], after: async (dir) => (await runOk('qemu-img', ['compare', '-U', join(dir, 'base.qcow2'), join(dir, 'top.qcow2')])) },
  { name: 'amend', args: ['amend', '-o', 'lazy_refcounts=on', '--image-opts', opts('base.qcow2')], after: (dir) => infoOf(dir, 'base.qcow2') },
  { name: 'bench', args: ['bench', '-c', '4', '--image-opts', opts('top.qcow2')], firstLine: true },
]

const output = (r: RunResult, firstLine: boolean): string => {
  const text = r.stdout.replace(/^qemu-img:/gm, 'qimg:')
  return firstLine ? text.split('\n')[0]! : text
}

describe('--image-opts: every command reads the operand as an option string', { concurrency: 4 }, () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const [q, i] = await twins(c.name.replaceAll(/\W+/g, '-'))
      const want = await run('qemu-img', c.args, { cwd: q })
      const got = await qimg(c.args, { cwd: i })
      assert.equal(want.code, c.code ?? 0, `qemu-img ${c.args.join(' ')}: ${want.stderr}`)
      assert.equal(got.code, want.code, got.stderr)
      assert.equal(output(got, c.firstLine ?? false), output(want, c.firstLine ?? false))
      if (c.after) assert.equal(await c.after(i), await c.after(q))
    })
  }
})

describe('check of a LUKS image through --image-opts and --object secret', () => {
  it('the right secret checks it; a wrong or missing one fails as in qemu-img', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const dir = join(root.path, 'luks')
    mkdirSync(dir, { recursive: true })
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=right', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', 'l.qcow2', '1M'], { cwd: dir })
    const image = opts('l.qcow2', ',encrypt.key-secret=sec0')
    for (const [secret, ok] of [['right', true], ['wrong', false]] as const) {
      const args = ['check', '--object', `secret,id=sec0,data=${secret}`, '--image-opts', image]
      const want = await run('qemu-img', args, { cwd: dir })
      const got = await qimg(args, { cwd: dir })
      assert.equal(want.code, ok ? 0 : 1)
      assert.equal(got.code, want.code, got.stderr)
      assert.equal(got.stdout, want.stdout)
      if (!ok) assert.match(got.stderr, /Invalid password, cannot unlock any keyslot/)
    }
    // No --object for the secret named, and no secret at all (not a terminal: nothing to ask).
    for (const args of [['check', '--image-opts', image], ['check', 'l.qcow2']]) {
      const want = await run('qemu-img', args, { cwd: dir, input: '' })
      const got = await qimg(args, { cwd: dir })
      assert.equal(want.code, 1)
      assert.equal(got.code, 1, got.stdout)
      assert.match(got.stderr, /No secret with id 'sec0'|Parameter 'encrypt.key-secret' is required for cipher/)
      assert.equal(got.stdout, '')
    }
  })
})

describe('--image-opts names every format module', () => {
  it('vpc, vmdk and vdi open by driver= as qemu-img opens them; an unknown option is refused alike', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const dir = join(root.path, 'formats')
    mkdirSync(dir, { recursive: true })
    for (const format of ['vpc', 'vmdk', 'vdi']) {
      const file = join(dir, `a.${format}`)
      await runOk('qemu-img', ['create', '-q', '-f', format, file, '4M'])
      for (const operand of [`driver=${format},file.filename=${file}`, `driver=${format},file.filename=${file},nosuch=1`]) {
        const [theirs, ours] = await Promise.all([run('qemu-img', ['map', '--image-opts', operand]), qimg(['map', '--image-opts', operand])])
        assert.equal(ours.stdout, theirs.stdout, operand)
        assert.equal(ours.stderr.replace(/^qimg:/, 'qemu-img:'), theirs.stderr, operand)
        assert.equal(ours.code, theirs.code, operand)
      }
    }
  })
})
