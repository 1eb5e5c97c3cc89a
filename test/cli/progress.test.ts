// Progress on the command line (issue 15): --progress=json on every long command (lines parsed,
// each phase's total constant and its bytes never going back, the last line 100 %), -p in
// qemu-img's form (compared with qemu-img's own output, numbers aside), and SIGUSR1.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QIMG, hasTool, needTools, run, runOk } from '../helpers/oracle.js'
import { startRangeServer } from '../helpers/range-server.js'
import { checkJsonProgress as checkJson } from '../helpers/progress.js'


const dir = mkdtempSync(join(tmpdir(), 'qimg-progress-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const at = (name: string): string => join(dir, name)
const qimg = (args: string[], env?: Record<string, string>) => run(process.execPath, [QIMG, ...args], env ? { env } : {})

/** -p output with the percentages and the number of lines drawn taken out. */
const barShape = (text: string): string => text.replace(/( {4}\(\d+\.\d\d\/100%\)\r)+/g, '<bar>')

describe('progress', { concurrency: 1 }, () => {
  before(async () => {
    if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
    // 4 KiB clusters: 2 MiB per L2 table, so check walks 64 L1 entries; data spread out.
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', at('base.qcow2'), '128M'])
    await runOk('qemu-io', ['-c', 'write -P 1 0 8M', '-c', 'write -P 3 64M 4M', at('base.qcow2')])
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', '-b', 'base.qcow2', '-F', 'qcow2', at('top.qcow2')])
    await runOk('qemu-io', ['-c', 'write -P 2 4M 8M', '-c', 'write -P 4 100M 1M', at('top.qcow2')])
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', at('empty.qcow2'), '128M'])
  })

  const copy = (from: string, to: string): string => {
    copyFileSync(at(from), at(to))
    return at(to)
  }
  /** A fresh copy of the chain: base-NAME and top-NAME over it. */
  const chain = async (name: string): Promise<string> => {
    copy('base.qcow2', `base-${name}.qcow2`)
    const top = copy('top.qcow2', `top-${name}.qcow2`)
    await runOk('qemu-img', ['rebase', '-u', '-b', `base-${name}.qcow2`, '-F', 'qcow2', top])
    return top
  }

  const cases: { name: string; phases: string[]; args: () => Promise<string[]>; code?: number }[] = [
    { name: 'convert', phases: ['copy'], args: async () => ['convert', '-O', 'qcow2', at('top.qcow2'), at('converted.qcow2')] },
    { name: 'check', phases: ['references', 'refcounts', 'copied'], args: async () => ['check', at('top.qcow2')] },
    { name: 'commit', phases: ['commit', 'empty'], args: async () => ['commit', await chain('commit')] },
    { name: 'commit -d', phases: ['commit'], args: async () => ['commit', '-d', await chain('commit-d')] },
    { name: 'rebase', phases: ['copy'], args: async () => ['rebase', '-b', 'empty.qcow2', '-F', 'qcow2', await chain('rebase')] },
    { name: 'rebase -u', phases: ['copy'], args: async () => ['rebase', '-u', '-b', 'empty.qcow2', '-F', 'qcow2', await chain('rebase-u')] },
    { name: 'compare', phases: ['compare'], args: async () => ['compare', at('top.qcow2'), at('top.qcow2')] },
    { name: 'snapshot -c', phases: ['create'], args: async () => ['snapshot', '-c', 'one', copy('base.qcow2', 'snap.qcow2')] },
    { name: 'snapshot -d', phases: ['delete'], args: async () => ['snapshot', '-d', 'one', at('snap.qcow2')] },
    { name: 'amend', phases: ['amend'], args: async () => ['amend', '-o', 'compat=0.10', copy('empty.qcow2', 'amend.qcow2')] },
    { name: 'bench', phases: ['read'], args: async () => ['bench', '-c', '2000', '-q', at('base.qcow2')] },
  ]
  for (const c of cases) {
    it(`${c.name} --progress=json: JSON lines, monotonic, ending at 100 %`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const args = await c.args()
      const r = await qimg([args[0]!, '--progress=json', ...args.slice(1)])
      assert.equal(r.code, c.code ?? 0, r.stderr)
      checkJson(r.stderr, c.phases)
    })
  }

  it('QIMG_PROGRESS=json: the same lines; --progress=human overrides it with the bar', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const json = await qimg(['compare', at('top.qcow2'), at('top.qcow2')], { QIMG_PROGRESS: 'json' })
    assert.equal(json.code, 0, json.stderr)
    const lines = checkJson(json.stderr, ['compare'])
    // Several steps of a 128 MiB walk reported, a few a second at most (plus first and last).
    assert.equal(lines[0]!.done, 0)
    const human = await qimg(['compare', '--progress=human', at('top.qcow2'), at('top.qcow2')], { QIMG_PROGRESS: 'json' })
    assert.equal(human.stderr, '')
    assert.equal(barShape(human.stdout), '<bar>Images are identical.\n\n')
  })

  it('--progress takes human or json', async () => {
    const r = await qimg(['check', '--progress=yes', at('top.qcow2')])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /--progress must be used with human or json as argument/)
  })

  // -p where qemu-img has it: the same output as qemu-img's, the percentages aside.
  const bars: { name: string; args: (tool: string) => Promise<string[]> }[] = [
    { name: 'convert', args: async (tool) => ['convert', '-p', '-O', 'raw', at('top.qcow2'), at(`${tool}-p.raw`)] },
    { name: 'commit', args: async (tool) => ['commit', '-p', await chain(`p-${tool}`)] },
    { name: 'rebase', args: async (tool) => ['rebase', '-p', '-b', 'empty.qcow2', '-F', 'qcow2', await chain(`rp-${tool}`)] },
    { name: 'amend', args: async (tool) => ['amend', '-p', '-o', 'compat=0.10', copy('empty.qcow2', `amend-${tool}.qcow2`)] },
    { name: 'compare (identical)', args: async () => ['compare', '-p', at('top.qcow2'), at('top.qcow2')] },
    { name: 'compare (different)', args: async () => ['compare', '-p', at('base.qcow2'), at('top.qcow2')] },
  ]
  for (const b of bars) {
    it(`${b.name} -p: qemu-img's lines`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const theirs = await run('qemu-img', await b.args('qemu'), { cwd: dir })
      const ours = await qimg(await b.args('qimg'))
      assert.equal(ours.code, theirs.code, ours.stderr)
      assert.equal(ours.stderr, theirs.stderr)
      assert.equal(barShape(ours.stdout), barShape(theirs.stdout))
      assert.match(ours.stdout, /^ {4}\(0\.00\/100%\)\r/)
      // The last line drawn is qemu-img's, 100 % where the work was done to the end.
      const lastBar = (text: string): string | undefined => text.match(/\((\d+\.\d\d)\/100%\)\r(?!.*\/100%)/s)?.[1]
      if (theirs.code === 0) assert.equal(lastBar(ours.stdout), '100.00')
      assert.equal(lastBar(ours.stdout) === '100.00', lastBar(theirs.stdout) === '100.00')
    })
  }

  /**
   * Starts `convert … -` with its standard output left undrained, so it cannot finish; once
   * `ready` has seen stderr, sends SIGUSR1 and waits for `printed`; then drains and ends it.
   */
  async function signalled(args: string[], env: Record<string, string>, ready: RegExp, printed: RegExp): Promise<{ stderr: string; code: number | null }> {
    const child = spawn(process.execPath, [QIMG, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.pause()
    let stderr = ''
    let signalledAt = -1
    const seen = new Promise<void>((resolve) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
        if (signalledAt < 0 && ready.test(stderr)) {
          signalledAt = stderr.length
          child.kill('SIGUSR1')
        }
        if (signalledAt >= 0 && printed.test(stderr.slice(signalledAt))) resolve()
      })
    })
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
    await Promise.race([seen, exited])
    child.stdout.resume()
    const code = await exited
    return { stderr, code }
  }

  it('SIGUSR1 during convert -p: qemu-img\'s line, "    (NN.NN/100%)" and a newline, on stderr', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const raw = at('sig.raw')
    writeFileSync(raw, new Uint8Array(32 * 1024 * 1024).fill(7))
    // The bar goes to stderr when the output is standard output; its first line means the
    // handler is in place.
    const r = await signalled(['convert', '-p', '-f', 'raw', '-O', 'raw', raw, '-'], {}, /\(0\.00\/100%\)\r/, /(^|\r) {4}\(\d{1,3}\.\d\d\/100%\)\n/)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /\r {4}\(\d{1,3}\.\d\d\/100%\)\n/)
    assert.ok(r.stderr.endsWith('    (100.00/100%)\r\n'), JSON.stringify(r.stderr.slice(-40)))
  })


  /**
   * Runs compare on an image over HTTP whose second half is held: compare stalls there, its
   * signal handler in place (the walk has begun); SIGUSR1 is sent, and once `printed` has seen
   * stderr the rest is released.
   */
  async function stalledCompare(options: string[], printed: (stderr: string) => boolean): Promise<{ stdout: string; stderr: string; code: number | null }> {
    const half = 4 * 1024 * 1024
    writeFileSync(at('remote.raw'), new Uint8Array(2 * half).fill(9))
    let release = (): void => undefined
    let held = (): void => undefined
    const holding = new Promise<void>((resolve) => { held = resolve })
    const server = await startRangeServer(dir, { holdFrom: half, release: new Promise<void>((resolve) => { release = resolve }), onHold: () => held() })
    try {
      const child = spawn(process.execPath, [QIMG, 'compare', ...options, '-f', 'raw', '-F', 'raw', `${server.url}/remote.raw`, at('remote.raw')], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
      const seen = new Promise<void>((resolve) => child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString()
        if (printed(stderr)) resolve()
      }))
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
      await holding
      child.kill('SIGUSR1')
      await Promise.race([seen, exited])
      release()
      const code = await exited
      return { stdout, stderr, code }
    } finally {
      release()
      await server.close()
    }
  }

  it('SIGUSR1 during compare (no -p): qemu-img\'s line alone on stderr, then the verdict', async () => {
    const r = await stalledCompare([], (stderr) => stderr.endsWith('\n'))
    assert.equal(r.code, 0, r.stderr)
    // compare reads in order, so it stalls with the first half done.
    assert.equal(r.stderr, '    (50.00/100%)\n')
    assert.equal(r.stdout, 'Images are identical.\n')
  })

  it('SIGUSR1 during compare --progress=json: a JSON line of where it stands', async () => {
    const r = await stalledCompare(['--progress=json'], (stderr) => stderr.includes('"done":4194304,'))
    assert.equal(r.code, 0, r.stderr)
    const lines = checkJson(r.stderr, ['compare'])
    assert.ok(lines.some((l) => l.done === 4194304 && l.percent === 50), r.stderr)
  })
})
