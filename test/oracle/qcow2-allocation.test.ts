// Oracle: the same qemu-io script (writes, write -z, write -z -u, discard, re-writes) run with
// qemu-io on one copy of an image and with `qimg io` on another leaves the same allocation,
// host offsets included (`qemu-img map --output=json`), the same guest content, and a clean
// image. This pins QEMU's allocator: zero flags instead of data, unmapping with -u, freed
// clusters reused from the lowest one (free_cluster_index), a write's host space kept
// contiguous (qcow2_alloc_clusters_at), and discard refused on v2 over a backing file.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync } from 'node:fs'
import { needTools, sharedWorkDir, run, runOk, qimgInProcess as qimgHere } from '../helpers/oracle.js'

const work = sharedWorkDir('qimg-oracle-alloc-', async (dir) => {
  await runOk('sh', ['-c', [
    'qemu-img create -q -f qcow2 base.qcow2 4M',
    "qemu-io -f qcow2 -c 'write -P 0x11 0 4M' base.qcow2",
  ].join(' >/dev/null && ')], { cwd: dir })
})
const { dir, at } = work

const SCRIPT = [
  'write -P 1 0 256k',
  'write -z 64k 64k', // the zero flag; the cluster keeps its allocation
  'write -z -u 128k 64k', // unmapped: freed
  'discard 192k 64k', // freed
  'write -P 2 512k 128k', // reuses the two freed clusters
  'write -z 100000 5000', // inside a zero cluster: the rest reads as zeros, so no data
  'write -z 300000 5000', // inside unallocated clusters (over a backing file: real zeros)
  'write -z -u 0 64k',
  'write -P 3 1M 64k', // reuses the cluster freed just before
  'discard 512k 128k',
  'write -P 4 2M 192k', // three clusters: the two-cluster hole is too small
  'write -P 5 70000 1000', // into the zero cluster that kept its allocation
  'write -P 6 2200000 150000', // in place, then new clusters right after (contiguous host space)
  'write -z 3M 1M', // to the end of the image
  'discard 1000000 100000', // unaligned: only whole clusters
  'write -P 7 3200000 70000',
]

interface Layout { name: string; create: string }

const LAYOUTS: Layout[] = [
  { name: 'qcow2 v3', create: '' },
  { name: 'qcow2 v3 over a backing file', create: '-b base.qcow2 -F qcow2' },
  { name: 'qcow2 v3, 4 KiB clusters, over a backing file', create: '-o cluster_size=4k -b base.qcow2 -F qcow2' },
  { name: 'qcow2 v2 (compat=0.10)', create: '-o compat=0.10' },
  { name: 'qcow2 v2 over a backing file (no zero flag: discard is refused)', create: '-o compat=0.10 -b base.qcow2 -F qcow2' },
  { name: 'extended L2 entries over a backing file', create: '-o extended_l2=on -b base.qcow2 -F qcow2' },
  { name: 'extended L2 entries, 32 KiB clusters', create: '-o extended_l2=on,cluster_size=32k' },
]

let copies = 0

describe('qimg io allocates as qemu-io does (map with host offsets, content, check)', { concurrency: 3 }, () => {
  for (const layout of LAYOUTS) {
    it(layout.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(work.ready())
      const n = ++copies
      const theirs = at(`q${n}.qcow2`)
      const ours = at(`o${n}.qcow2`)
      await runOk('sh', ['-c', `qemu-img create -q -f qcow2 ${layout.create} ${theirs} 4M`], { cwd: dir })
      copyFileSync(theirs, ours)
      const commands = SCRIPT.flatMap((command) => ['-c', command])
      const [q, o] = await Promise.all([run('qemu-io', ['-f', 'qcow2', ...commands, theirs]), qimgHere(['io', '-f', 'qcow2', ...commands, ours])])
      assert.equal(q.code, 0, q.stderr)
      assert.equal(o.code, 0, o.stderr)
      const [mapTheirs, mapOurs, check, compare] = await Promise.all([
        runOk('qemu-img', ['map', '--output=json', theirs]),
        runOk('qemu-img', ['map', '--output=json', ours]),
        run('qemu-img', ['check', ours]),
        run('qemu-img', ['compare', theirs, ours]),
      ])
      assert.equal(mapOurs.replaceAll(ours, theirs), mapTheirs, 'qemu-img map --output=json')
      assert.equal(compare.stdout, 'Images are identical.\n', compare.stderr)
      assert.equal(check.code, 0, check.stdout + check.stderr)
    })
  }

  it('discard on a v2 overlay never shows the backing file again', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    const image = at('v2-discard.qcow2')
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'base.qcow2', '-F', 'qcow2', image], { cwd: dir })
    const o = await qimgHere(['io', '-f', 'qcow2', '-c', 'write -P 0x22 0 128k', '-c', 'discard 0 128k', '-c', 'write -z -u 128k 64k', '-c', 'discard 128k 64k', image])
    assert.equal(o.code, 0, o.stderr)
    // The guest wrote 0x22, then zeros: those are what it reads, not the base's 0x11.
    const read = await run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x22 0 128k', '-c', 'read -P 0 128k 64k', image])
    assert.doesNotMatch(read.stdout, /Pattern verification failed/, read.stdout)
    assert.equal(read.code, 0, read.stderr)
  })
})
