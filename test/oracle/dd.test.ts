// Oracle: `qimg dd` against `qemu-img dd` 7.2. Each case runs both tools in two directories on
// the same input: the same exit code and messages, an output of the same format and size
// (`qemu-img info`), the same guest content (`qemu-img compare`), the same allocation
// (`qemu-img map`: qemu-img dd writes every block as data) and `qemu-img check` clean.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, qimg, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { qemuImg, qemuIo } from './images.js'

const root = tempDir('qimg-oracle-dd-')
after(() => root.cleanup())

function normalize(r: RunResult): { code: number; stderr: string; stdout: string } {
  return { code: r.code, stderr: r.stderr.replace(/^(qemu-img|qimg): /gm, 'PROG: ').replaceAll("'qimg --help'", "'qemu-img --help'"), stdout: r.stdout }
}

async function prepare(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true })
  await qemuImg(['create', '-f', 'qcow2', join(dir, 'in.qcow2'), '3M'])
  await qemuIo(join(dir, 'in.qcow2'), ['write -P 0x11 0 100k', 'write -P 0x22 1M 3k', 'write -z 2M 64k', 'write -P 0x33 3070k 2k'])
  await qemuImg(['create', '-f', 'raw', join(dir, 'in.raw'), '1000000'])
  await qemuIo(join(dir, 'in.raw'), ['write -P 0x44 0 4096', 'write -P 0x55 999424 576'], { format: 'raw' })
}

let cases = 0

/** Runs `qemu-img dd ARGS` and `qimg dd ARGS`; compares messages and, if made, the outputs. */
async function compareDd(args: string[], output: string, format = 'raw'): Promise<void> {
  const dir = join(root.path, `case${cases++}`)
  const qemuDir = join(dir, 'qemu')
  const qimgDir = join(dir, 'qimg')
  await prepare(qemuDir)
  await prepare(qimgDir)
  const expected = normalize(await run('qemu-img', ['dd', ...args], { cwd: qemuDir }))
  const actual = normalize(await qimg(['dd', ...args], { cwd: qimgDir }))
  const what = `dd ${args.join(' ')}`
  assert.deepEqual(actual, expected, what)
  const theirs = join(qemuDir, output)
  const ours = join(qimgDir, output)
  assert.equal(existsSync(ours), existsSync(theirs), `${what}: output made`)
  if (!existsSync(theirs)) return
  const info = async (path: string) => {
    const i = JSON.parse(await qemuImg(['info', '-f', format, '--output=json', path])) as Record<string, unknown>
    return { format: i['format'], size: i['virtual-size'], clusterSize: i['cluster-size'] }
  }
  assert.deepEqual(await info(ours), await info(theirs), `${what}: info`)
  if (format === 'raw') assert.equal(statSync(ours).size, statSync(theirs).size, `${what}: file size`)
  const compare = await run('qemu-img', ['compare', '-f', format, '-F', format, ours, theirs])
  assert.equal(compare.code, 0, `${what}: ${compare.stdout}${compare.stderr}`)
  if (format === 'qcow2') {
    const map = async (path: string) => (await qemuImg(['map', '--output=json', path])).replace(/"offset": \d+/g, '')
    assert.equal(await map(ours), await map(theirs), `${what}: map`)
    const check = await run('qemu-img', ['check', ours])
    assert.equal(check.code, 0, `${what}: ${check.stdout}`)
  }
}

describe('oracle: qimg dd against qemu-img dd', { concurrency: 2 }, () => {
  it('copies: default block size, bs/count/skip, raw and qcow2 outputs, partial last block', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await compareDd(['if=in.qcow2', 'of=out.raw'], 'out.raw')
    await compareDd(['-O', 'qcow2', 'if=in.qcow2', 'of=out.qcow2'], 'out.qcow2', 'qcow2')
    await compareDd(['-f', 'qcow2', '-O', 'qcow2', 'bs=64k', 'count=20', 'skip=3', 'if=in.qcow2', 'of=out.qcow2'], 'out.qcow2', 'qcow2')
    await compareDd(['bs=100', 'count=3', 'if=in.qcow2', 'of=out.raw'], 'out.raw')
    await compareDd(['-O', 'qcow2', 'bs=100', 'count=3', 'if=in.qcow2', 'of=out.qcow2'], 'out.qcow2', 'qcow2')
    await compareDd(['bs=4096', 'skip=1', 'if=in.raw', 'of=out.raw', '-f', 'raw'], 'out.raw')
    await compareDd(['bs=1M', 'count=1k', 'if=in.qcow2', 'of=out.raw'], 'out.raw')
    await compareDd(['bs=3000', 'skip=100', 'count=200', 'if=in.qcow2', 'of=out.raw'], 'out.raw')
  })

  it('skip past the end: a message, an empty output, exit 0', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await compareDd(['skip=5000000', 'if=in.qcow2', 'of=out.raw'], 'out.raw')
    await compareDd(['-O', 'qcow2', 'bs=1M', 'skip=4', 'if=in.qcow2', 'of=out.qcow2'], 'out.qcow2', 'qcow2')
  })

  it('errors: operands, sizes, formats, files', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    for (const args of [
      ['if=in.qcow2', 'of=out.raw', 'foo'], ['if=in.qcow2', 'of=out.raw', 'foo=1'], ['if=in.qcow2'], ['of=out.raw'],
      ['bs=0', 'if=in.qcow2', 'of=out.raw'], ['bs=-1', 'if=in.qcow2', 'of=out.raw'], ['bs=3G', 'if=in.qcow2', 'of=out.raw'],
      ['count=x', 'if=in.qcow2', 'of=out.raw'], ['skip=-1', 'if=in.qcow2', 'of=out.raw'],
      ['-O', 'foo', 'if=in.qcow2', 'of=out.raw'], ['-O', 'qcow2', 'if=in.qcow2', 'of=/nonexistent/out.qcow2'],
      ['if=in.qcow2', 'of=/nonexistent/out.raw'], ['-x', 'if=in.qcow2', 'of=out.raw'],
    ]) await compareDd(args, 'out.raw')
  })
})
