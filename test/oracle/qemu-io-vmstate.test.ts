// Oracle: qemu-io's read -b / write -b (the VM state area). qcow2 keeps it in the guest address
// space past the disk (qcow2_vm_state_offset), growing the L1 table to reach it: qimg as
// qemu-io prints the same transcript and leaves a byte-identical file; each tool reads back what
// the other wrote. Raw has no VM state area (ENOTSUP).
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { QIMG, filterQemuIo, needTools, run, runOk, tempDir } from '../helpers/oracle.js'

const dir = tempDir('qimg-oracle-vmstate-')
after(() => dir.cleanup())

/** Runs qemu-io (`ours`: qimg through a link named qemu-io) with -c commands; the transcript and code. */
async function qemuIo(ours: boolean, args: string[], commands: string[]): Promise<{ output: string; code: number }> {
  const link = dir.file('qemu-io')
  if (ours) {
    try {
      symlinkSync(QIMG, link)
    } catch { /* made by an earlier run */ }
  }
  const [program, first] = ours ? [process.execPath, [link]] : ['qemu-io', []]
  const r = await run(program, [...first, ...args, ...commands.flatMap((c) => ['-c', c])])
  return { output: filterQemuIo(r.stdout + r.stderr), code: r.code }
}

interface Case {
  name: string
  /** Makes the image NAME in the work directory (qemu-img create options). */
  create: (name: string) => string[][]
  format: string
  commands: string[]
  /** Read back by the other tool: the same transcript from both images. */
  check?: string[]
}

const CASES: Case[] = [
  {
    name: 'qcow2 6G, 4k clusters: L1 grown several times, tables crossed, partial clusters',
    create: (name) => [['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', name, '6G']],
    format: 'qcow2',
    commands: [
      'write -b -P 1 10485760 4096', 'read -b -P 1 10485760 4096', 'write -b -P 2 4294967296 4096', 'write -b -P 3 3M 2M',
      'write -b -c -P 4 0 512', 'read -b -P 4 0 512', 'read -b -P 0 512 3584', 'read -b -P 5 3M 512', 'read -b -v 4294967296 32',
    ],
    check: ['read -b -P 1 10485760 4096', 'read -b -P 2 4294967296 4096', 'read -b -P 3 3M 2M', 'read -b -P 4 0 512', 'read -P 0 0 1M'],
  },
  {
    name: 'qcow2 over a backing file, 64k clusters (022)',
    create: (name) => [
      ['create', '-q', '-f', 'qcow2', `${name}.base`, '6G'],
      // Named relative to the overlay: both tools' files hold the same name.
      ['create', '-q', '-f', 'qcow2', '-b', 'image.base', '-F', 'qcow2', name, '6G'],
    ],
    format: 'qcow2',
    commands: ['write -b 10485760 4096', 'read -b 10485760 4096', 'write -b 4294967296 4096', 'read -b 4294967296 4096', 'write -b -P 7 536870400 1k'],
    check: ['read -b -P 0xcd 10485760 4096', 'read -b -P 7 536870400 1k', 'read -b -P 0 536871424 64k'],
  },
  {
    name: 'raw: no VM state area',
    create: (name) => [['create', '-q', '-f', 'raw', name, '1M']],
    format: 'raw',
    commands: ['write -b 0 512', 'read -b 0 512', 'write -b 1 512'],
  },
]

describe('qimg as qemu-io: read -b / write -b as qemu-io', { concurrency: 1 }, () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      // Each tool's image in a directory of its own, under the same name.
      const [theirs, ours] = ['q', 'o'].map((which) => {
        const path = dir.file(`${which}${CASES.indexOf(c)}`)
        mkdirSync(path)
        return join(path, 'image')
      }) as [string, string]
      for (const image of [theirs, ours]) for (const args of c.create(image)) await runOk('qemu-img', args)
      const q = await qemuIo(false, ['-f', c.format, theirs], c.commands)
      const o = await qemuIo(true, ['-f', c.format, ours], c.commands)
      assert.equal(o.output, q.output, 'transcript')
      assert.equal(o.code, q.code, 'exit code')
      assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'byte-identical images')
      if (!c.check) return
      const check = await run('qemu-img', ['check', ours])
      assert.equal(check.code, 0, check.stdout + check.stderr)
      // Each tool reads what the other wrote.
      const qemuReadsOurs = await qemuIo(false, ['-f', c.format, ours], c.check)
      const oursReadsQemu = await qemuIo(true, ['-f', c.format, theirs], c.check)
      assert.doesNotMatch(qemuReadsOurs.output, /verification failed|failed:/)
      assert.equal(oursReadsQemu.output, qemuReadsOurs.output)
    })
  }
})
