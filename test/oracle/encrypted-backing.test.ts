// Oracle: an encrypted overlay over an encrypted backing file, each with its own secret
// (iotest 189): `create -b` needs no secret for the backing file (bdrv_img_create opens it with
// BDRV_O_NO_IO), and backing.encrypt.key-secret in --image-opts unlocks the backing file.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { QIMG, needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'

const SECRETS = ['--object', 'secret,id=sec0,data=astrochicken', '--object', 'secret,id=sec1,data=furby']
const LUKS = (id: string) => `encrypt.format=luks,encrypt.key-secret=${id},encrypt.iter-time=10`

const work = sharedWorkDir('qimg-oracle-encrypted-backing-', async (dir) => {
  await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', ...SECRETS, '-o', LUKS('sec0'), 'base.qcow2', '16M'], { cwd: dir })
  await runOk('qemu-io', [...SECRETS, '--image-opts', 'driver=qcow2,file.filename=base.qcow2,encrypt.key-secret=sec0', '-c', 'write -P 0xa 0 16M'], { cwd: dir })
})

const spec = (top: string) => `driver=qcow2,file.filename=${top},backing.driver=qcow2,backing.file.filename=base.qcow2,backing.encrypt.key-secret=sec0,encrypt.key-secret=sec1`

describe('encrypted overlay over an encrypted backing file', () => {
  it('qimg creates and writes it as qemu-img and qemu-io do', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    assert.ok(work.ready())
    const qimg = (args: string[]) => run(process.execPath, [QIMG, ...args], { cwd: work.dir })
    const args = (top: string) => ['create', '-f', 'qcow2', '--object', 'secret,id=sec1,data=furby', '-o', LUKS('sec1'), '-b', 'base.qcow2', '-F', 'qcow2', top]
    const [theirs, ours] = [await run('qemu-img', args('theirs.qcow2'), { cwd: work.dir }), await qimg(args('ours.qcow2'))]
    assert.equal(ours.code, 0, ours.stderr)
    assert.equal(ours.stdout.replace('ours.qcow2', 'theirs.qcow2'), theirs.stdout)
    const written = await qimg(['io', ...SECRETS, '--image-opts', spec('ours.qcow2'), '-c', 'write -P 0xe 0 1024'])
    assert.equal(written.code, 0, written.stdout + written.stderr)
    assert.match(written.stdout, /^wrote 1024\/1024 bytes at offset 0$/m)
    // qemu-io reads qimg's overlay: the new bytes, then the backing file's through the cluster.
    const read = await run('qemu-io', [...SECRETS, '--image-opts', spec('ours.qcow2'), '-c', 'read -P 0xe 0 1024', '-c', 'read -P 0xa 1024 64512'], { cwd: work.dir })
    assert.equal(read.code, 0, read.stderr)
    assert.doesNotMatch(read.stdout, /Pattern verification failed/)
    const check = await run('qemu-img', ['check', ...SECRETS, '--image-opts', spec('ours.qcow2')], { cwd: work.dir })
    assert.equal(check.code, 0, check.stdout + check.stderr)
  })
})
