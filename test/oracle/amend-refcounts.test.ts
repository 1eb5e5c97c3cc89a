// Oracle: amend -o refcount_bits copies the refcounts as stored (qcow2_change_refcount_order), so
// a wrong refcount is still there for check to find, as iotest 112 expects.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, openSync, writeSync, closeSync } from 'node:fs'
import { needTools, qimg, run, runOk, tempDir } from '../helpers/oracle.js'

describe('amend refcount_bits', () => {
  it('keeps a refcount lower than the references; check reports and repairs it as after qemu-img amend', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const d = tempDir()
    try {
      const img = d.file('a.qcow2')
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=2', img, '64M'])
      await runOk('qemu-io', ['-c', 'write 0 64k', img])
      // The second L2 entry (L2 table at 0x40000) points at the data cluster at 0x50000 too.
      const fd = openSync(img, 'r+')
      writeSync(fd, Buffer.from('8000000000050000', 'hex'), 0, 8, 0x40008)
      closeSync(fd)
      copyFileSync(img, d.file('q.qcow2'))
      copyFileSync(img, d.file('o.qcow2'))
      await runOk('qemu-img', ['amend', '-o', 'refcount_bits=16', d.file('q.qcow2')])
      const amended = await qimg(['amend', '-o', 'refcount_bits=16', d.file('o.qcow2')])
      assert.equal(amended.code, 0, amended.stderr)
      const [theirs, ours] = await Promise.all([run('qemu-img', ['check', d.file('q.qcow2')]), run('qemu-img', ['check', d.file('o.qcow2')])])
      assert.match(theirs.stderr, /ERROR cluster 5 refcount=1 reference=2/)
      assert.equal(ours.stderr, theirs.stderr)
      assert.equal(ours.stdout, theirs.stdout)
      assert.equal(ours.code, theirs.code)
    } finally {
      d.cleanup()
    }
  })
})
