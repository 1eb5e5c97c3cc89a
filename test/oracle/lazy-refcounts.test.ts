// Oracle: lazy refcounts and the dirty bit (iotests 039, 061). A qemu-io killed after writes to
// a lazy_refcounts=on image leaves L2 entries on disk but not the data clusters' refcounts; a
// `qimg io` killed after the same commands must leave the same bytes, so that `qemu-img check`
// reports the same stale refcounts on both. Opening such an image for writing repairs it with
// the check's messages on stderr (qcow2_do_open), and `check -r all` leaves what qemu-img's does.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { QIMG, needTools, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { create, firstDifference, MiB } from './images.js'

const root = tempDir('qimg-oracle-lazy-')
after(() => root.cleanup())

/** Runs qemu-io or `qimg io` with `-c` commands; a run ending in `sigraise 9` exits killed. */
function io(tool: 'qemu-io' | 'qimg', file: string, commands: readonly string[]): Promise<RunResult> {
  const args = ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]
  const [program, argv] = tool === 'qemu-io' ? ['qemu-io', args] : [process.execPath, [QIMG, 'io', ...args]]
  // Through sh: a process killed by a signal is an exit status there, not an exception.
  return run('sh', ['-c', '"$@"; exit 0', 'sh', program, ...argv])
}

/** Output without the timing line of each request. */
const untimed = (text: string): string => text.split('\n').filter((l) => !/ops; /.test(l)).join('\n')

function assertSameBytes(qimgFile: string, qemuFile: string, what: string): void {
  const a = readFileSync(qimgFile)
  const b = readFileSync(qemuFile)
  assert.equal(a.length, b.length, `${what}: file sizes differ`)
  const at = firstDifference(a, b)
  assert.equal(at, -1, `${what}: first differing byte at ${at}`)
}

/** Two fresh lazy_refcounts=on images, one per tool, in a directory of their own. */
async function pair(size: number): Promise<{ qimgFile: string; qemuFile: string; dir: string }> {
  const dir = mkdtempSync(join(root.path, 'case-'))
  await create(dir, 'qimg.qcow2', size, { compat: '1.1', lazy_refcounts: 'on' })
  await create(dir, 'qemu.qcow2', size, { compat: '1.1', lazy_refcounts: 'on' })
  return { qimgFile: join(dir, 'qimg.qcow2'), qemuFile: join(dir, 'qemu.qcow2'), dir }
}

const KILLED_RUNS: { name: string; commands: string[] }[] = [
  { name: 'one write, then SIGKILL (039)', commands: ['write -P 0x5a 0 512', 'sigraise 9'] },
  { name: 'writes under two L2 tables, then SIGKILL (061)', commands: ['write -P 0x2a 0 128k', 'write -P 0x2b 600M 64k', 'write -P 0x2c 1M 4k', 'sigraise 9'] },
  { name: 'a write, a flush, a write, then abort', commands: ['write -P 0x11 0 64k', 'flush', 'write -P 0x12 2M 64k', 'abort'] },
]

describe('lazy refcounts: a killed writer', () => {
  for (const c of KILLED_RUNS) {
    it(`${c.name}: same bytes on disk and the same check report as QEMU's`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const { qimgFile, qemuFile } = await pair(1024 * MiB)
      await io('qemu-io', qemuFile, c.commands)
      await io('qimg', qimgFile, c.commands)
      assertSameBytes(qimgFile, qemuFile, c.name)
      const onQemu = await run('qemu-img', ['check', qemuFile])
      const onQimg = await run('qemu-img', ['check', qimgFile])
      assert.equal(onQemu.code, 2, 'the stale refcounts are corruptions')
      assert.deepEqual(onQimg, onQemu)
    })
  }

  it('opening the dirty image for writing repairs it, with the check messages on stderr', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const { qimgFile, qemuFile } = await pair(128 * MiB)
    await io('qemu-io', qemuFile, ['write -P 0x5a 0 512', 'sigraise 9'])
    copyFileSync(qemuFile, qimgFile)
    const byQemu = await io('qemu-io', qemuFile, ['write 0 512'])
    const byQimg = await io('qimg', qimgFile, ['write 0 512'])
    assert.match(byQemu.stderr, /Rebuilding refcount structure/)
    assert.equal(byQimg.stderr, byQemu.stderr)
    assert.equal(untimed(byQimg.stdout), untimed(byQemu.stdout))
    assertSameBytes(qimgFile, qemuFile, 'after the repairing open')
  })

  it('check -r all leaves the bytes qemu-img check -r all leaves (freed clusters discarded)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const { qimgFile, qemuFile } = await pair(128 * MiB)
    await io('qemu-io', qemuFile, ['write -P 0x5a 0 512', 'sigraise 9'])
    copyFileSync(qemuFile, qimgFile)
    const byQemu = await run('qemu-img', ['check', '-r', 'all', qemuFile])
    const byQimg = await run(process.execPath, [QIMG, 'check', '-r', 'all', qimgFile])
    assert.equal(byQimg.code, byQemu.code)
    assert.equal(byQimg.stderr, byQemu.stderr)
    assert.equal(byQimg.stdout, byQemu.stdout.replaceAll(qemuFile, qimgFile))
    assertSameBytes(qimgFile, qemuFile, 'after check -r all')
  })
})
