// qimg started as qemu-nbd: its messages and exit codes for refused command lines are
// qemu-nbd 7.2's (nothing listens in any of these cases).
import assert from 'node:assert/strict'
import { symlinkSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import { QIMG, needTools, run, tempDir } from '../helpers/oracle.js'

const dir = tempDir('qimg-nbd-cli-')
const link = dir.file('qemu-nbd')
symlinkSync(QIMG, link)
after(() => dir.cleanup())

describe('qemu-nbd command line', () => {
  const sock = dir.file('never.sock')
  const cases: string[][] = [
    ['-k', 'relative.sock', 'x'],
    ['-e', '-1', 'x'],
    ['-e', 'many', 'x'],
    ['--cache=bogus', 'x'],
    ['-n', '--cache=none', 'x'],
    ['--aio=bogus', 'x'],
    ['--discard=x', 'x'],
    ['--discard=unmap', '--discard=unmap', 'x'],
    ['--detect-zeroes=unmap', 'x'],
    [],
    ['a', 'b'],
    ['-f', 'qcow2', '--image-opts', 'x'],
    ['--bogus', 'x'],
    ['-x', 'n'.repeat(4097), 'x'],
    ['-D', 'd'.repeat(4097), 'x'],
    ['--tls-authz', 'a', 'x'],
    ['-k', sock, dir.file('missing.qcow2')],
  ]
  for (const args of cases) {
    it(`qemu-nbd ${args.join(' ').slice(0, 60)}`, async (t) => {
      if (!needTools(t, 'qemu-nbd')) return
      const theirs = await run('qemu-nbd', args, { cwd: dir.path })
      const ours = await run(link, args, { cwd: dir.path })
      assert.equal(ours.stderr, theirs.stderr)
      assert.equal(ours.code, theirs.code)
      assert.notEqual(ours.code, 0)
    })
  }
})
