// Oracle: `qimg bitmap`, guest writes tracked by enabled bitmaps, and `convert --bitmaps` against
// qemu-img 7.2. Every scenario runs on two copies of one image in two directories (same file
// names): qemu-img (and qemu-io for guest writes) on one, qimg (the CLI, and the library for
// guest writes) on the other. After each step: same exit code and messages (node names
// "#blockNNN" are random in qemu-img), same `qemu-img info --output=json`, `qemu-img check`
// clean, and the bitmaps as QEMU reads them equal: `qemu-img convert --bitmaps` of both copies
// gives byte-identical files, and their bitmap bits (read back) are the same.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { openImage } from '../../src/node/open.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import { needTools, qimg, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { KiB, MiB, qemuImg, qemuIo, qemuIoAbort } from './images.js'

const root = tempDir('qimg-oracle-bitmap-')
after(() => root.cleanup())

/** A step: a command both tools run (file names relative to the copy's directory), or guest writes. */
type Step = { cmd: string[] } | { write: [offset: number, length: number][] }

function normalize(r: RunResult): { code: number; stderr: string; stdout: string } {
  const stderr = r.stderr.replace(/^(qemu-img|qimg): /gm, 'PROG: ').replaceAll("'qimg --help'", "'qemu-img --help'").replace(/#block\d+/g, '#block')
  return { code: r.code, stderr, stdout: r.stdout }
}

/** Bits of every bitmap as qimg reads them: name, granularity, enabled, in use, dirty runs. */
async function bitmapDump(path: string): Promise<string[]> {
  const device = await openImage(path, { format: 'qcow2', fileReferences: 'ignore' })
  try {
    const image = device.driver as Qcow2Image
    return (await image.readBitmaps()).map((b) => `${b.name} g=${b.granularity} enabled=${b.enabled} inconsistent=${b.inconsistent} bits=${Buffer.from(b.bits).toString('hex')}`)
  } finally {
    await device.close()
  }
}

async function infoJson(path: string): Promise<unknown> {
  const info = JSON.parse(await qemuImg(['info', '--output=json', path])) as Record<string, unknown>
  delete info['filename']
  delete info['actual-size']
  return info
}

async function guestWrite(path: string, ranges: [number, number][], viaQimg: boolean): Promise<void> {
  if (!viaQimg) {
    await qemuIo(path, ranges.map(([o, l]) => `write -P 0x5a ${o} ${l}`))
    return
  }
  const device = await openImage(path, { format: 'qcow2', writable: true })
  try {
    for (const [o, l] of ranges) await device.write(o, new Uint8Array(l).fill(0x5a))
  } finally {
    await device.close()
  }
}

/** Runs `steps` on both copies of `prepare`'s image and compares after each. */
async function scenario(name: string, prepare: (dir: string) => Promise<void>, steps: Step[], files = ['disk.qcow2']): Promise<void> {
  const qemuDir = join(root.path, name, 'qemu')
  const qimgDir = join(root.path, name, 'qimg')
  mkdirSync(qemuDir, { recursive: true })
  mkdirSync(qimgDir, { recursive: true })
  await prepare(qemuDir)
  await prepare(qimgDir)
  for (const [i, step] of steps.entries()) {
    const what = `${name} step ${i}: ${JSON.stringify(step)}`
    if ('write' in step) {
      await guestWrite(join(qemuDir, 'disk.qcow2'), step.write, false)
      await guestWrite(join(qimgDir, 'disk.qcow2'), step.write, true)
    } else {
      const expected = normalize(await run('qemu-img', step.cmd, { cwd: qemuDir }))
      const actual = normalize(await qimg(step.cmd, { cwd: qimgDir }))
      assert.deepEqual(actual, expected, what)
    }
    for (const file of files.filter((f) => existsSync(join(qemuDir, f)))) await compareCopies(what, qemuDir, qimgDir, file)
  }
}

async function compareCopies(what: string, qemuDir: string, qimgDir: string, file: string): Promise<void> {
  {
    const ours = join(qimgDir, file)
    const theirs = join(qemuDir, file)
    const check = await run('qemu-img', ['check', ours])
    assert.equal(check.code, 0, `${what}: qemu-img check: ${check.stdout}${check.stderr}`)
    assert.deepEqual(await infoJson(ours), await infoJson(theirs), `${what}: info`)
    assert.deepEqual(await bitmapDump(ours), await bitmapDump(theirs), `${what}: bitmap bits`)
    // QEMU reads both copies' bitmaps and writes them out: the results are the same bytes.
    const inconsistent = (await bitmapDump(theirs)).some((b) => b.includes('inconsistent=true'))
    if (!inconsistent) {
      await qemuImg(['convert', '--bitmaps', '-O', 'qcow2', ours, join(qimgDir, 'copy.qcow2')])
      await qemuImg(['convert', '--bitmaps', '-O', 'qcow2', theirs, join(qemuDir, 'copy.qcow2')])
      assert.ok(readFileSync(join(qimgDir, 'copy.qcow2')).equals(readFileSync(join(qemuDir, 'copy.qcow2'))), `${what}: convert --bitmaps copies differ`)
    }
  }
}

const plain = (size = 10 * MiB, extra: string[] = []) => async (dir: string): Promise<void> => {
  await qemuImg(['create', '-f', 'qcow2', ...extra, join(dir, 'disk.qcow2'), String(size)])
  await qemuIo(join(dir, 'disk.qcow2'), ['write -P 1 0 64k', 'write -P 2 1M 100k'])
}

const bitmap = (...args: string[]): Step => ({ cmd: ['bitmap', ...args] })

describe('oracle: qimg bitmap and bitmap tracking against qemu-img', { concurrency: 2 }, () => {
  it('add, write tracking, disable/enable, clear, merge, remove — one action at a time', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await scenario('basic', plain(), [
      bitmap('--add', 'disk.qcow2', 'b0'),
      bitmap('--add', '-g', '1k', 'disk.qcow2', 'b1'),
      { write: [[2 * MiB, 64 * KiB], [5 * MiB + 700, 3000]] },
      bitmap('--disable', 'disk.qcow2', 'b0'),
      { write: [[3 * MiB, 64 * KiB]] },
      bitmap('--enable', 'disk.qcow2', 'b0'),
      { write: [[10 * MiB - 512, 512]] },
      bitmap('--clear', 'disk.qcow2', 'b1'),
      { write: [[4 * MiB + 1, 1]] },
      bitmap('--merge', 'b0', 'disk.qcow2', 'b1'),
      bitmap('--remove', 'disk.qcow2', 'b0'),
      bitmap('--remove', 'disk.qcow2', 'b1'),
    ])
  })

  it('several actions in one invocation, applied in order; a failing one keeps the earlier ones', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await scenario('multi', plain(), [
      bitmap('--add', '--disable', '-g', '4k', 'disk.qcow2', 'a'),
      bitmap('--add', 'disk.qcow2', 'b'),
      { write: [[0, 4 * KiB], [7 * MiB, 200 * KiB]] },
      bitmap('--clear', '--merge', 'b', '--enable', 'disk.qcow2', 'a'),
      bitmap('--remove', '--add', '-g', '64k', 'disk.qcow2', 'a'),
      bitmap('--clear', '--add', 'disk.qcow2', 'b'),
      bitmap('--remove', '--clear', 'disk.qcow2', 'a'),
    ])
  })

  it('merge from another file (-b, -F) and its errors', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await scenario('merge-file', async (dir) => {
      await plain()(dir)
      await qemuImg(['create', '-f', 'qcow2', join(dir, 'other.qcow2'), '10M'])
      await qemuImg(['bitmap', '--add', '-g', '512', join(dir, 'other.qcow2'), 'src'])
      await qemuIo(join(dir, 'other.qcow2'), ['write 1536 1k', 'write 9M 4k'])
      await qemuImg(['create', '-f', 'qcow2', join(dir, 'small.qcow2'), '5M'])
      await qemuImg(['bitmap', '--add', join(dir, 'small.qcow2'), 'src'])
    }, [
      bitmap('--add', 'disk.qcow2', 'dst'),
      bitmap('--merge', 'src', '-b', 'other.qcow2', 'disk.qcow2', 'dst'),
      bitmap('--merge', 'src', '-b', 'other.qcow2', '-F', 'qcow2', 'disk.qcow2', 'dst'),
      bitmap('--merge', 'nope', '-b', 'other.qcow2', 'disk.qcow2', 'dst'),
      bitmap('--merge', 'src', '-b', 'small.qcow2', 'disk.qcow2', 'dst'),
      bitmap('--merge', 'src', '-b', 'other.qcow2', 'disk.qcow2', 'missing'),
    ])
  })

  it('errors: usage, names, granularity, v2 and raw images', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await scenario('errors', async (dir) => {
      await plain()(dir)
      await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=0.10', join(dir, 'v2.qcow2'), '1M'])
      await qemuImg(['create', '-f', 'raw', join(dir, 'r.raw'), '1M'])
    }, [
      bitmap('disk.qcow2', 'b'),
      bitmap('--add', 'disk.qcow2'),
      bitmap('--add', '-F', 'raw', 'disk.qcow2', 'b'),
      bitmap('--add', '-b', 'r.raw', 'disk.qcow2', 'b'),
      bitmap('--clear', '-g', '4k', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', 'x', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', '-5', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', '99999999999999999999999', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', '100', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', '256', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', '4G', 'disk.qcow2', 'b'),
      bitmap('--add', '-g', '2G', 'disk.qcow2', 'big'),
      bitmap('--add', 'disk.qcow2', ''),
      bitmap('--add', 'disk.qcow2', 'x'.repeat(1024)),
      bitmap('--add', 'disk.qcow2', 'b'),
      bitmap('--add', 'disk.qcow2', 'b'),
      bitmap('--remove', 'disk.qcow2', 'nope'),
      bitmap('--clear', 'disk.qcow2', 'nope'),
      bitmap('--enable', 'disk.qcow2', 'nope'),
      bitmap('--merge', 'nope', 'disk.qcow2', 'b'),
      bitmap('--disabled', 'disk.qcow2', 'b'),
      bitmap('--add', '-f', 'qcow2', 'v2.qcow2', 'b'),
      bitmap('--add', '-f', 'raw', 'r.raw', 'b'),
      bitmap('--clear', '-f', 'raw', 'r.raw', 'b'),
    ])
  })

  it('bitmaps left in use by a crash: inconsistent for clear/enable/merge, removable', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    await scenario('in-use', async (dir) => {
      await plain()(dir)
      await qemuImg(['bitmap', '--add', join(dir, 'disk.qcow2'), 'good'])
      await qemuImg(['bitmap', '--add', join(dir, 'disk.qcow2'), 'bad'])
      await qemuIoAbort(join(dir, 'disk.qcow2'), ['write 0 64k'], dir)
      await qemuImg(['bitmap', '--remove', join(dir, 'disk.qcow2'), 'good'])
      await qemuImg(['bitmap', '--add', join(dir, 'disk.qcow2'), 'good'])
    }, [
      bitmap('--clear', 'disk.qcow2', 'bad'),
      bitmap('--enable', 'disk.qcow2', 'bad'),
      bitmap('--merge', 'bad', 'disk.qcow2', 'good'),
      bitmap('--merge', 'good', 'disk.qcow2', 'bad'),
      { write: [[1 * MiB, 4 * KiB]] },
      bitmap('--remove', 'disk.qcow2', 'bad'),
    ])
  })

  it('convert --bitmaps: copies, order, state; errors for raw/v2 and inconsistent bitmaps', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const convert = (...args: string[]): Step => ({ cmd: ['convert', ...args] })
    await scenario('convert', async (dir) => {
      await plain()(dir)
      for (const b of ['a1', 'b2', 'c3']) await qemuImg(['bitmap', '--add', '-g', b === 'b2' ? '8k' : '64k', join(dir, 'disk.qcow2'), b])
      await qemuImg(['bitmap', '--disable', join(dir, 'disk.qcow2'), 'b2'])
      await qemuIo(join(dir, 'disk.qcow2'), ['write 128k 64k'])
      await qemuImg(['create', '-f', 'qcow2', join(dir, 'broken.qcow2'), '1M'])
      await qemuImg(['bitmap', '--add', join(dir, 'broken.qcow2'), 'x'])
      await qemuImg(['bitmap', '--add', join(dir, 'broken.qcow2'), 'y'])
      await qemuIoAbort(join(dir, 'broken.qcow2'), ['write 0 4k'], dir)
    }, [
      convert('--bitmaps', '-O', 'qcow2', 'disk.qcow2', 'out.qcow2'),
      bitmap('--add', 'out.qcow2', 'later'),
      convert('--bitmaps', '-O', 'raw', 'disk.qcow2', 'out.raw'),
      convert('--skip-broken-bitmaps', '-O', 'qcow2', 'disk.qcow2', 'out2.qcow2'),
      convert('--bitmaps', '-O', 'qcow2', '-o', 'compat=0.10', 'disk.qcow2', 'v2.qcow2'),
      convert('--bitmaps', '-O', 'qcow2', 'v2.qcow2', 'v3.qcow2'),
      convert('--bitmaps', '-O', 'qcow2', 'broken.qcow2', 'b1.qcow2'),
      convert('--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', 'broken.qcow2', 'b2.qcow2'),
    ], ['disk.qcow2', 'out.qcow2'])
  })
})
