// Oracle: qemu-io's blkdebug breakpoints (break, wait_break, resume, remove_break) with aio
// requests really in flight (iotest 046): a request suspended at write_aio holds back those that
// depend on its cluster until resumed. qimg as qemu-io prints the same transcript (commands from
// standard input, completions after the prompts) and leaves a byte-identical image.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { QIMG, filterQemuIo, hasTool, needTools, run, runOk, tempDir } from '../helpers/oracle.js'

const dir = tempDir('qimg-oracle-breakpoints-')
after(() => dir.cleanup())

before(async () => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  symlinkSync(QIMG, dir.file('qemu-io'))
  await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', dir.file('base.qcow2'), '8M'])
  await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 8M', dir.file('base.qcow2')])
})

/** Runs qemu-io (`ours`: qimg through a link of that name) with `commands` on standard input, stdout and stderr merged. */
async function qemuIo(ours: boolean, image: string, commands: string[]): Promise<{ output: string; code: number }> {
  const script = dir.file(`${ours ? 'o' : 'q'}-script`)
  writeFileSync(script, commands.map((c) => `${c}\n`).join(''))
  const program = ours ? [process.execPath, dir.file('qemu-io')] : ['qemu-io']
  const r = await run('sh', ['-c', `"$0" "$@" < "${script}" 2>&1`, ...program, image])
  return { output: filterQemuIo(r.stdout), code: r.code }
}

/**
 * Requests released together complete in an order QEMU's thread pool decides: the reports
 * printed after one prompt are compared as a set.
 */
function completionsSorted(output: string): string {
  return output.split('qemu-io> ').map((chunk) => chunk.split(/(?=^wrote )/m).sort().join('')).join('qemu-io> ')
}

interface Case {
  name: string
  /** blkdebug::IMAGE, or the image itself. */
  blkdebug: boolean
  commands: string[]
}

const CASES: Case[] = [
  {
    name: 'suspended requests, dependent requests behind them, resumes and removals',
    blkdebug: true,
    commands: [
      'break write_aio A', 'aio_write -P 10 0x18000 0x2000', 'wait_break A', 'aio_write -P 11 0x12000 0x2000', 'aio_write -P 12 0x1c000 0x2000',
      'resume A', 'aio_flush', 'break write_aio B', 'break bogus_event C', 'aio_write -P 20 0x28000 0x2000', 'wait_break B', 'resume C',
      'remove_break X', 'remove_break B', 'aio_flush', 'break write_aio D', 'remove_break D', 'resume D', 'write -P 30 0x40000 0x1000',
      'read -P 11 0x12000 0x2000', 'read -P 20 0x28000 0x2000', 'read -P 10 0x18000 0x2000', 'read -P 1 0x14000 0x4000',
    ],
  },
  { name: 'no blkdebug node: not supported', blkdebug: false, commands: ['break write_aio A', 'resume A', 'remove_break A', 'aio_write 0 4k', 'aio_flush'] },
]

describe('qimg as qemu-io: blkdebug breakpoints as qemu-io', { concurrency: 1 }, () => {
  for (const [index, c] of CASES.entries()) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const [theirs, ours] = ['q', 'o'].map((which) => dir.file(`${which}${index}.qcow2`)) as [string, string]
      for (const image of [theirs, ours]) await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', image, '8M'])
      const name = (image: string): string => (c.blkdebug ? `blkdebug::${image}` : image)
      const q = await qemuIo(false, name(theirs), c.commands)
      const o = await qemuIo(true, name(ours), c.commands)
      assert.equal(completionsSorted(o.output), completionsSorted(q.output), 'transcript')
      assert.equal(o.code, q.code, 'exit code')
      assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'byte-identical images')
    })
  }
})
