// Oracle: operands that describe a block graph — json: names, --image-opts strings, file: and
// blkdebug: prefixes — open as qemu-img opens them: `qemu-img info` and `map --output=json` print
// the same (image name included, json: in QDict order), and malformed ones fail with the same words.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'

const work = sharedWorkDir('qimg-oracle-block-options-', async (dir) => {
  writeFileSync(join(dir, 'l2.cfg'), '[inject-error]\nevent = "l2_load"\n')
  await runOk('sh', ['-c', [
    'qemu-img create -q -f qcow2 a.qcow2 1M',
    "qemu-io -c 'write -P 0x11 0 128k' a.qcow2",
    'qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2',
    "qemu-io -c 'write -P 0x22 64k 64k' b.qcow2",
    'qemu-img create -q -f qcow2 inner.qcow2 1M',
    "qemu-io -c 'write -P 0x33 0 4k' inner.qcow2",
    'qemu-img create -q -f qcow2 outer.qcow2 4M',
    'qemu-img convert -n -f raw -O qcow2 inner.qcow2 outer.qcow2',
    'qemu-img create -q -f qcow2 --object secret,id=sec0,data=abc -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 e.qcow2 1M',
  ].join(' >/dev/null && ')], { cwd: dir })
}, ['qemu-img'])
const { dir } = work

/** Operands for `info`; each list item is the arguments after the command. */
const INFO: string[][] = [
  ['json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'],
  ["json:{'driver':'qcow2','file':{'filename':'a.qcow2'}}"],
  ['json:{"file.filename":"a.qcow2"}'],
  ['json:{"driver":"qcow2","backing":null,"file":{"filename":"b.qcow2"}}'],
  ['--backing-chain', 'json:{"driver":"qcow2","file":{"filename":"b.qcow2"}}'],
  ['json:{"driver":"raw","offset":512,"size":1024,"file":{"filename":"a.qcow2"}}'],
  ['json:{"driver":"raw","offset":100,"file":{"filename":"a.qcow2"}}'],
  ['json:{"driver":"file","filename":"a.qcow2"}'],
  ['json:{"driver":"blkdebug","image":{"driver":"file","filename":"a.qcow2"}}'],
  ['json:{"driver":"qcow2","file":{"driver":"blkdebug","image":{"filename":"a.qcow2"}}}'],
  ['json:{"driver":"qcow2","file":{"driver":"blkdebug","image.filename":"a.qcow2","inject-error":[{"event":"l2_load"}]}}'],
  ['json:{"driver":"qcow2","file":{"driver":"qcow2","file":{"filename":"outer.qcow2"}}}'],
  ['file:a.qcow2'],
  ['blkdebug::a.qcow2'],
  ['blkdebug:l2.cfg:a.qcow2'],
  ['--image-opts', 'driver=qcow2,file.filename=a.qcow2'],
  ['--image-opts', 'file.filename=a.qcow2'],
  ['--image-opts', 'driver=file,filename=a.qcow2'],
  ['--image-opts', 'driver=raw,file.filename=a.qcow2,offset=512,size=1024'],
  ['--image-opts', 'driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2,file.config=l2.cfg'],
  ['--image-opts', 'driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2,file.align=4096,file.config=l2.cfg'],
  ['--object', 'secret,id=sec0,data=abc', '--image-opts', 'driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=sec0'],
  // Malformed: the same error line and exit code.
  ['json:{'], ['json:[1]'], ['json:'], ['json:{"a":}'], ['json:{"a" 1}'], ['json:{"a":1}x'], ['json:{"a":1,"a":2}'],
  ['json:{a:1}'], ['json:{"a":tru}'], ['json:{1:1}'], ['json:{"a":1 "b":2}'], ['json:{"a":[1 2]}'], ['json:{"a":"\\q"}'], ['json:{"a":@}'],
  ['json:{"driver":"qcow2","file":{"filename":"a.qcow2"},"foo":1}'],
  ['json:{"file":"a.qcow2"}'],
  ['json:{"driver":"nosuch","file":{"filename":"a.qcow2"}}'],
  ['json:{"filename":"a.qcow2","file.driver":"file"}'],
  ['json:{"driver":"qcow2","file":{"filename":"b.qcow2"},"backing":{"driver":"qcow2","file":{"filename":"a.qcow2"}}}'],
  ['json:{"driver":"raw","offset":1000000,"file":{"filename":"a.qcow2"}}'],
  ['json:{"driver":"raw","offset":512,"size":1000000,"file":{"filename":"a.qcow2"}}'],
  ['json:{"driver":"raw","size":1000,"file":{"filename":"a.qcow2"}}'],
  ['file:nonexist'], ['foo:bar'], ['blkdebug:a.qcow2'], ['blkdebug:nosuch.cfg:a.qcow2'],
  ['--image-opts', 'driver=qcow2,file.filename=a.qcow2,foo=1'],
  ['--image-opts', 'driver=qcow2,file=a.qcow2'],
  ['--image-opts', 'driver=qcow2'],
  ['--image-opts', 'driver=qcow2,file.filename=a.qcow2,file.driver=blkdebug'],
  ['--image-opts', 'driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2,file.inject-error.0.event=nosuch'],
  ['--image-opts', 'driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2,file.inject-error.0.foo=x'],
  ['--image-opts', 'driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2,file.inject-error.0.errno=x'],
  ['--image-opts', 'driver=qcow2,file.filename=a.qcow2,file.x.0=1,file.x.y=2'],
  ['--image-opts', 'driver=qcow2,file.filename=a.qcow2,read-only=x'],
  ['--image-opts', 'driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2,file.align=3'],
  ['--image-opts', 'driver=qcow2,file.filename=a.qcow2,,x'],
]

/** Operands for `map --output=json`. */
const MAP: string[][] = [
  ['json:{"driver":"raw","offset":512,"size":1024,"file":{"filename":"a.qcow2"}}'],
  ['blkdebug::a.qcow2'],
  ['json:{"driver":"qcow2","file":{"filename":"b.qcow2"},"backing":null}'],
  ['file:b.qcow2'],
  ['--image-opts', 'driver=qcow2,file.filename=b.qcow2,backing.driver=qcow2,backing.file.filename=a.qcow2'],
  ['json:{"driver":"qcow2","file":{"driver":"qcow2","file":{"filename":"outer.qcow2"}}}'],
]

async function compare(args: string[]): Promise<void> {
  const [theirs, ours] = await Promise.all([
    run('qemu-img', args, { cwd: dir }),
    run(process.execPath, [work.linked('qemu-img'), ...args], { cwd: dir }),
  ])
  const what = args.join(' ')
  assert.equal(ours.stdout, theirs.stdout, what)
  assert.equal(ours.stderr, theirs.stderr, what)
  assert.equal(ours.code, theirs.code, what)
}

describe('block-graph operands open as qemu-img opens them', () => {
  it('info', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    for (const args of INFO) await compare(['info', ...args])
  })

  it('map --output=json', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    for (const args of MAP) await compare(['map', '--output=json', ...args])
  })
})
