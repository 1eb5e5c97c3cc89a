// Oracle: `qimg convert -B BASE` (compressed or not, any cluster size, with -n too) gives a
// target that reads exactly like the source, and lays it out as qemu-img convert does: zero
// runs over a backing file whose content is not zero become zero clusters; what the source's
// top layer leaves to its own backing file stays unallocated.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync } from 'node:fs'
import { needTools, sharedWorkDir, qimg, run, runOk } from '../helpers/oracle.js'

const work = sharedWorkDir('qimg-oracle-convert-backing-', async (dir) => {
  await runOk('sh', ['-c', [
    'qemu-img create -q -f qcow2 base.qcow2 2M',
    "qemu-io -f qcow2 -c 'write -P 0x11 0 2M' base.qcow2",
    // An overlay of the base: zero clusters (plain and unmapped), data, a partial zero write.
    'qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2',
    "qemu-io -f qcow2 -c 'write -z 0 128k' -c 'write -P 0x22 128k 64k' -c 'write -z -u 256k 64k' -c 'write -P 0x33 600k 5000' -c 'write -z 1M 4k' overlay.qcow2",
    // A flat image (no backing file): what it leaves unallocated reads as zeros.
    'qemu-img create -q -f qcow2 flat.qcow2 2M',
    "qemu-io -f qcow2 -c 'write -P 0x44 128k 64k' -c 'write -z 0 64k' -c 'write -P 0 512k 64k' flat.qcow2",
  ].join(' >/dev/null && ')], { cwd: dir })
})
const { dir, at } = work

interface Case { source: string; args: string[]; existing?: boolean }

const CASES: Case[] = []
for (const source of ['overlay.qcow2', 'flat.qcow2']) {
  for (const compress of [false, true]) {
    for (const clusterSize of ['64k', '4k']) {
      CASES.push({ source, args: [...(compress ? ['-c'] : []), '-o', `cluster_size=${clusterSize}`] })
    }
    // -n: into an existing overlay of the base.
    CASES.push({ source, args: compress ? ['-c'] : [], existing: true })
  }
}

let copies = 0

describe('qimg convert -B: the target reads like the source, laid out as qemu-img lays it out', { concurrency: 3 }, () => {
  for (const c of CASES) {
    it(`${c.source} ${c.existing ? '-n ' : ''}${c.args.join(' ')}`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(work.ready())
      const n = ++copies
      const theirs = at(`q${n}.qcow2`)
      const ours = at(`o${n}.qcow2`)
      if (c.existing) {
        await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', theirs], { cwd: dir })
        copyFileSync(theirs, ours)
      }
      const args = (target: string) => ['convert', ...(c.existing ? ['-n'] : []), '-O', 'qcow2', ...c.args, '-B', 'base.qcow2', '-F', 'qcow2', c.source, target]
      const [q, o] = await Promise.all([run('qemu-img', args(theirs), { cwd: dir }), qimg(args(ours), { cwd: dir })])
      assert.equal(q.code, 0, q.stderr)
      assert.equal(o.code, 0, o.stderr)
      const [compare, chain, check, mapTheirs, mapOurs] = await Promise.all([
        run('qemu-img', ['compare', c.source, ours], { cwd: dir }),
        run('qemu-img', ['compare', theirs, ours]),
        run('qemu-img', ['check', ours]),
        runOk('qemu-img', ['map', '--output=json', theirs]),
        runOk('qemu-img', ['map', '--output=json', ours]),
      ])
      assert.equal(compare.stdout, 'Images are identical.\n', `source vs target: ${compare.stdout}${compare.stderr}`)
      assert.equal(chain.stdout, 'Images are identical.\n', `qemu-img's target vs qimg's: ${chain.stdout}${chain.stderr}`)
      assert.equal(check.code, 0, check.stdout + check.stderr)
      assert.equal(mapOurs, mapTheirs, 'qemu-img map --output=json')
    })
  }
})
