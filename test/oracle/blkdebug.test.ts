// Oracle: error paths proven with blkdebug. The same blkdebug configuration (an ini file, json:
// rules, --image-opts rules) runs through qemu-io and through qimg started as qemu-io, on copies
// of one image: transcripts, error lines, exit codes and the images left behind must agree.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'

const withoutTimes = (transcript: string): string => transcript.replace(/^\S.*ops; .*$/gm, '<statistics>')

const CONFIGS: Record<string, string> = {
  'l2-load.cfg': '[inject-error]\nevent = "l2_load"\n',
  'refblock-alloc.cfg': '# the next request after a refcount update fails, once\n[inject-error]\nevent = "refblock_alloc"\nonce = "on"\n',
  'read-aio.cfg': '[inject-error]\nevent = "read_aio"\nerrno = "5"\nonce ="off"\n',
  'flush-to-disk.cfg': '[inject-error]\nevent = "flush_to_disk"\n',
  'states.cfg': [
    '[set-state]', 'state = "1"', 'event = "l2_load"', 'new_state = "2"', '',
    '[inject-error]', 'state = "2"', 'event = "read_aio"', 'errno = "28"', '',
  ].join('\n'),
}

const work = sharedWorkDir('qimg-oracle-blkdebug-', async (dir) => {
  for (const [name, text] of Object.entries(CONFIGS)) writeFileSync(join(dir, name), text)
  await runOk('sh', ['-c', "qemu-img create -q -f qcow2 base.qcow2 1M && qemu-io -c 'write -P 0x11 0 128k' base.qcow2 >/dev/null && qemu-img create -q -f qcow2 empty.qcow2 1M"], { cwd: dir })
}, ['qemu-io', 'qemu-img'])
const { dir, at } = work

interface Case {
  name: string
  /** The operand, with IMG for the image copy. */
  operand: string
  commands: string[]
  imageOpts?: boolean
}

const CASES: Case[] = [
  { name: 'l2_load: the L2 table read fails (read-only)', operand: 'blkdebug:l2-load.cfg:IMG', commands: ['-r', '-c', 'read -P 0x11 0 64k'] },
  { name: 'l2_load: reads and an allocating write fail', operand: 'blkdebug:l2-load.cfg:IMG', commands: ['-c', 'read -P 0x11 0 64k', '-c', 'write -P 0x22 512k 64k'] },
  { name: 'refblock_alloc once: the allocating write fails, later ones succeed', operand: 'blkdebug:refblock-alloc.cfg:IMG', commands: ['-c', 'write -P 0x22 512k 64k', '-c', 'write -P 0x22 0 64k', '-c', 'read -P 0x22 0 64k'] },
  { name: 'flush_to_disk: the flush fails, then every request', operand: 'blkdebug:flush-to-disk.cfg:IMG', commands: ['-c', 'write 0 64k', '-c', 'flush', '-c', 'write 0 64k'] },
  { name: 'set-state: l2_load moves to state 2, where read_aio fails with ENOSPC', operand: 'blkdebug:states.cfg:IMG', commands: ['-c', 'read -P 0x11 0 64k', '-c', 'read -P 0x11 64k 64k'] },
  {
    name: 'json: rules with sector and iotype',
    operand: 'json:{"driver":"qcow2","file":{"driver":"blkdebug","image":{"filename":"IMG"},"inject-error":[{"event":"read_aio","sector":768,"iotype":"read","errno":"28"}]}}',
    commands: ['-c', 'read -P 0x11 0 64k', '-c', 'read -P 0x11 64k 64k', '-c', 'read -P 0x11 0 512'],
  },
  {
    name: '--image-opts rules: once, immediately',
    operand: 'driver=qcow2,file.driver=blkdebug,file.image.filename=IMG,file.inject-error.0.event=l2_load,file.inject-error.0.once=on,file.inject-error.0.immediately=on',
    commands: ['-c', 'read 0 4k', '-c', 'read 0 4k'],
    imageOpts: true,
  },
]

let copies = 0

describe('blkdebug: qimg fails where qemu-io fails, with the same messages', { concurrency: 2 }, () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(work.ready())
      const n = ++copies
      const theirsFile = `q${n}.qcow2`
      const oursFile = `o${n}.qcow2`
      copyFileSync(at('base.qcow2'), at(theirsFile))
      copyFileSync(at('base.qcow2'), at(oursFile))
      const args = (file: string): string[] => [...(c.imageOpts ? ['--image-opts'] : []), ...c.commands, c.operand.replace('IMG', file)]
      const [theirs, ours] = await Promise.all([
        run('qemu-io', args(theirsFile), { cwd: dir }),
        run(process.execPath, [work.linked('qemu-io'), ...args(oursFile)], { cwd: dir }),
      ])
      assert.match(theirs.stdout + theirs.stderr, /(failed|Failed to flush).*: (Input\/output error|No space left on device)/, 'the case injects an error')
      assert.equal(withoutTimes(ours.stdout), withoutTimes(theirs.stdout), 'transcript')
      assert.equal(ours.stderr, theirs.stderr, 'error lines')
      assert.equal(ours.code, theirs.code, 'exit code')
      const [check, compare] = await Promise.all([run('qemu-img', ['check', at(oursFile)]), run('qemu-img', ['compare', at(theirsFile), at(oursFile)])])
      assert.equal(check.code, 0, check.stdout + check.stderr)
      assert.equal(compare.stdout, 'Images are identical.\n', compare.stderr)
    })
  }

  it('compare: a failed read names the image and the offset, exit code 4 (iotest 074)', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    assert.ok(work.ready())
    for (const pair of [['blkdebug:read-aio.cfg:base.qcow2', 'empty.qcow2'], ['empty.qcow2', 'blkdebug:read-aio.cfg:base.qcow2']]) {
      const [theirs, ours] = await Promise.all([
        run('qemu-img', ['compare', ...pair], { cwd: dir }),
        run(process.execPath, [work.linked('qemu-img'), 'compare', ...pair], { cwd: dir }),
      ])
      assert.equal(theirs.code, 4, theirs.stderr)
      assert.equal(ours.stderr, theirs.stderr)
      assert.equal(ours.stdout, theirs.stdout)
      assert.equal(ours.code, theirs.code)
    }
  })

  // iotest 204 in small: blkdebug is a filter, so block status comes from the qcow2 node and its
  // backing chain; zero writes below opt-write-zero become written zeros, discards pass in pieces.
  it('blkdebug over qcow2: block status through the filter, zero writes and discards split by the limits', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    await runOk('sh', ['-c', [
      'qemu-img create -q -f qcow2 -o cluster_size=64k filter-base.qcow2 8M',
      "qemu-io -c 'write -P 11 0 8M' filter-base.qcow2 >/dev/null",
      'qemu-img create -q -f qcow2 -o cluster_size=64k -b filter-base.qcow2 -F qcow2 filter-top.qcow2',
      "qemu-io -c 'write -P 22 0 7M' filter-top.qcow2 >/dev/null",
      'cp filter-top.qcow2 filter-q.qcow2 && cp filter-top.qcow2 filter-o.qcow2',
    ].join(' && ')], { cwd: dir })
    const limits = 'align=512,opt-write-zero=960k,max-write-zero=960k,opt-discard=960k,max-discard=960k'
    const open = (file: string): string => `open -o driver=blkdebug,image.driver=qcow2,${limits} blkdebug::${file}`
    const commands = (file: string): string[] => ['-c', open(file), '-c', 'write -z 2M 2M', '-c', 'discard 5000001 1920k', '-c', 'alloc 1 1', '-c', 'alloc 0x6ffff0 1000', '-c', 'alloc 7m 5P', '-c', 'map']
    const [theirs, ours] = await Promise.all([
      run('qemu-io', commands('filter-q.qcow2'), { cwd: dir }),
      run(process.execPath, [work.linked('qemu-io'), ...commands('filter-o.qcow2')], { cwd: dir }),
    ])
    assert.equal(theirs.code, 0, theirs.stderr)
    assert.match(theirs.stdout, /16\/1000 bytes allocated/, 'the case reaches the backing file through the filter')
    assert.equal(withoutTimes(ours.stdout), withoutTimes(theirs.stdout), 'transcript')
    assert.equal(ours.stderr, theirs.stderr)
    const map = (file: string): Promise<string> => runOk('qemu-img', ['map', '--output=json', file], { cwd: dir })
    const [theirMap, ourMap] = await Promise.all([map('filter-q.qcow2'), map('filter-o.qcow2')])
    assert.equal(ourMap.replaceAll("filter-o", "filter-q"), theirMap, "the images have the same allocation")
    const opts = (file: string): string[] => ['map', '--image-opts', `driver=blkdebug,image.driver=qcow2,image.file.driver=file,image.file.filename=${file},align=4k`]
    const [theirFilterMap, ourFilterMap] = await Promise.all([run('qemu-img', opts('filter-q.qcow2'), { cwd: dir }), run(process.execPath, [work.linked('qemu-img'), ...opts('filter-q.qcow2')], { cwd: dir })])
    assert.match(theirFilterMap.stdout, /filter-base\.qcow2/)
    assert.equal(ourFilterMap.stdout, theirFilterMap.stdout, 'map through the filter')
  })

  // qemu-io words open errors its own way ("can't open device"): that is the io command's part.
  it('blkdebug: operands that cannot open say what qemu-img info says', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    assert.ok(work.ready())
    for (const operand of ['blkdebug:base.qcow2', 'blkdebug:missing.cfg:base.qcow2', 'json:{"driver":"qcow2","file":{"driver":"blkdebug","image.filename":"base.qcow2","inject-error":[{"event":"nosuch"}]}}',
      'json:{"driver":"qcow2","file":{"driver":"blkdebug","image.filename":"base.qcow2","inject-error":[{"event":"l2_load","errno":"x"}]}}',
      'json:{"driver":"qcow2","file":{"driver":"blkdebug","image.filename":"base.qcow2","align":3}}']) {
      const [theirs, ours] = await Promise.all([
        run('qemu-img', ['info', operand], { cwd: dir }),
        run(process.execPath, [work.linked('qemu-img'), 'info', operand], { cwd: dir }),
      ])
      assert.notEqual(theirs.code, 0, operand)
      assert.equal(ours.stderr, theirs.stderr, operand)
      assert.equal(ours.code, theirs.code, operand)
    }
  })
})
