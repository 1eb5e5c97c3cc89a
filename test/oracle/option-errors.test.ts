// Oracle: command lines qemu-img refuses while parsing them, or after (iotests 074, 178), print
// the same lines with the same exit code from qimg run as qemu-img.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'

const work = sharedWorkDir('qimg-oracle-option-errors-', async (dir) => {
  await runOk('sh', ['-c', [
    'qemu-img create -q -f qcow2 a.qcow2 1M',
    'qemu-img create -q -f qcow2 big.qcow2 2M',
    "qemu-io -c 'write -P 0x11 1M 64k' big.qcow2",
    'printf \'[inject-error]\\nevent = "read_aio"\\nerrno = "5"\\n\' > eio.cfg',
  ].join(' && ')], { cwd: dir })
}, ['qemu-img'])

const CASES: string[][] = [
  ['measure'], ['measure', '--size', '2G', 'a.qcow2'], ['measure', 'a.qcow2', 'b'], ['measure', '--image-opts'],
  ['measure', '-f', 'qcow2'], ['measure', '-l', 'snap1'], ['measure', '-o', ','], ['measure', '-l', 'snapshot.foo=bar'],
  ['measure', '-O', 'foo', 'a.qcow2'], ['measure', '--size', '7E'], ['measure', '--output=json', '--size', '7E'],
  ['create', '-f', 'qcow2', '-o', ',', 'x.qcow2', '1M'], ['create', '-f', 'qcow2', '-o', 'cluster_size=4k,,,', 'x.qcow2', '1M'],
  ['convert', '-o', ',', 'a.qcow2', 'x.raw'], ['convert', '-l', 'snapshot.foo=bar', 'a.qcow2', 'x.raw'],
  ['amend', '-o', ',', 'a.qcow2'],
  // The size warning is printed (buffered stdout) even when the part only one image has fails to read.
  ['compare', 'blkdebug:eio.cfg:big.qcow2', 'a.qcow2'],
]

describe('option errors as qemu-img prints them', () => {
  it('each command line', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    for (const args of CASES) {
      const [theirs, ours] = await Promise.all([
        run('qemu-img', args, { cwd: work.dir }),
        run(process.execPath, [work.linked('qemu-img'), ...args], { cwd: work.dir }),
      ])
      const what = args.join(' ')
      assert.equal(ours.stdout, theirs.stdout, what)
      assert.equal(ours.stderr, theirs.stderr, what)
      assert.equal(ours.code, theirs.code, what)
    }
  })
})
