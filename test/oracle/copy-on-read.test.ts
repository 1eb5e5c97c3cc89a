// Oracle: copy-on-read (qemu-io -C, and the copy-on-read filter driver) as iotests 197 and 215
// try it, in small: the same commands through qemu-io and through qimg started as qemu-io, on
// copies of one overlay; transcripts, messages and the allocation left behind must agree.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, writeFileSync } from 'node:fs'
import { filterQemuIo, needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'

const work = sharedWorkDir('qimg-oracle-cor-', async (dir) => {
  writeFileSync(`${dir}/cor.cfg`, '[inject-error]\nevent = "cor_write"\nsector = "2048"\n')
  await runOk('sh', ['-c', [
    'qemu-img create -q -f qcow2 base.qcow2 8M',
    "qemu-io -c 'write -P 55 6M 1k' base.qcow2 >/dev/null",
    'qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 wrap.qcow2',
    "qemu-io -f qcow2 -c 'write -z -u 1M 64k' wrap.qcow2 >/dev/null",
    'qemu-img create -q -f qcow2 -o compat=1.1 small.qcow2 1024',
  ].join(' && ')], { cwd: dir })
}, ['qemu-io'])
const { dir, at } = work

let copies = 0

/** Runs `args(file)` through qemu-io and qimg on fresh copies of `image`; returns the copies' names. */
async function both(image: string, args: (file: string) => string[]): Promise<[string, string]> {
  const n = ++copies
  const theirs = `q${n}-${image}`
  const ours = `o${n}-${image}`
  copyFileSync(at(image), at(theirs))
  copyFileSync(at(image), at(ours))
  const [q, o] = await Promise.all([
    run('qemu-io', args(theirs), { cwd: dir }),
    run(process.execPath, [work.linked('qemu-io'), ...args(ours)], { cwd: dir }),
  ])
  assert.equal(filterQemuIo(o.stdout).replaceAll(ours, theirs), filterQemuIo(q.stdout), 'transcript')
  assert.equal(o.stderr.replaceAll(ours, theirs), q.stderr, 'messages')
  assert.equal(o.code, q.code, 'exit code')
  const maps = await Promise.all([theirs, ours].map((f) => runOk('qemu-img', ['map', '--output=json', '-f', 'qcow2', f], { cwd: dir })))
  assert.equal(maps[1]!.replaceAll(ours, theirs), maps[0], 'allocation left behind')
  return [theirs, ours]
}

describe('copy-on-read: qimg copies what qemu-io copies', { concurrency: 2 }, () => {
  it('-C through blkdebug: an allocated cluster is not written again, the rest is copied', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    await both('wrap.qcow2', (f) => ['-c', `open -C -o driver=blkdebug,config=cor.cfg,image.driver=qcow2 ${f}`, '-c', 'read -P 0 1M 128k', '-c', 'map'])
  })

  it('-C rounds to clusters: zeros become zero clusters, data is copied, the result has no backing dependency', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    const [theirs, ours] = await both('wrap.qcow2', (f) => ['-f', 'qcow2', '-C', '-c', 'read 0 0', '-c', 'read -P 0 1k 3M', '-c', 'read -P 55 6M 512', '-c', 'map', f])
    for (const f of [theirs, ours]) await runOk('qemu-img', ['rebase', '-u', '-b', '', '-f', 'qcow2', f], { cwd: dir })
    const [check, compare] = await Promise.all([run('qemu-img', ['check', at(ours)]), run('qemu-img', ['compare', at(theirs), at(ours)])])
    assert.equal(check.code, 0, check.stdout)
    assert.equal(compare.stdout, 'Images are identical.\n')
  })

  it('the copy-on-read filter driver copies as -C does', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    await both('wrap.qcow2', (f) => ['-c', `open -o driver=copy-on-read,file.driver=qcow2 ${f}`, '-c', 'read -P 55 6M 1k', '-c', 'map'])
  })

  it('a partial final cluster without a backing file is allocated as zeros', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    await both('small.qcow2', (f) => ['-f', 'qcow2', '-C', '-c', 'read 0 1024', '-c', 'map', f])
  })

  it('read-only: -C and the filter are refused with QEMU\'s messages', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    await both('wrap.qcow2', (f) => ['-f', 'qcow2', '-C', '-r', f])
    await both('wrap.qcow2', (f) => ['-c', `open -r -o driver=copy-on-read,file.driver=qcow2 ${f}`])
  })
})
