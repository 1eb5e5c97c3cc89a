// Oracle: legacy AES encrypted qcow2 (crypt_method 1), created and written by qimg as qemu-img
// 7.2 and qemu-io do. The image is a plain qcow2 with crypt_method 1 (no header extension, the
// key is the secret cut or zero-padded to 16 bytes); data is AES-128-CBC with plain64 IVs of the
// GUEST sector. qimg's files are compared byte for byte with QEMU's where both write the same,
// and read back through qemu-io, `qemu-img check` and `qemu-img compare`.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { hasTool, needTools, qimg, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { firstDifference, writePatternedRaw } from './images.js'

const root = tempDir('qimg-oracle-aes-')
after(() => root.cleanup())
const dir = root.path
const at = (name: string) => join(dir, name)

const OBJECT = ['--object', 'secret,id=sec0,data=123456']
const AES = 'encrypt.format=aes,encrypt.key-secret=sec0'
/** `--image-opts` string opening `file` with the secret. */
const keyed = (file: string) => `driver=qcow2,file.filename=${file},encrypt.key-secret=sec0`

const SIZE = 4 * 1024 * 1024
/** Writes in qemu-io syntax: unaligned in one cluster, across clusters, past allocated data, zeros, rewrites. */
const WRITES = [
  'write -P 0x5a 1000 3000',
  'write -P 0xa5 65000 70000',
  'write -P 0x3c 2621500 700',
  'write -z 2M 4096',
  'write -P 0x07 3M 64k',
  'write -P 0x08 3M 100',
  'write -P 0x09 1001 7',
  'write -P 0x0b 200k 64k',
]

/** `base` with WRITES applied. */
function applied(base: Buffer): Buffer {
  const out = Buffer.from(base)
  const size = (text: string) => (text.endsWith('M') ? Number(text.slice(0, -1)) * 1024 * 1024 : text.endsWith('k') ? Number(text.slice(0, -1)) * 1024 : Number(text))
  for (const command of WRITES) {
    const [, pattern, offset, length] = /^write (?:-P (\S+)|-z) (\S+) (\S+)$/.exec(command)!
    out.fill(pattern === undefined ? 0 : Number(pattern), size(offset!), size(offset!) + size(length!))
  }
  return out
}

const ioArgs = (file: string, commands: readonly string[]) => ['--object', 'secret,id=sec0,data=123456', '--image-opts', keyed(file), ...commands.flatMap((c) => ['-c', c])]

async function ok(r: Promise<RunResult>, what: string): Promise<RunResult> {
  const result = await r
  assert.equal(result.code, 0, `${what}: ${result.stderr}`)
  return result
}

/** Guest content of an encrypted image through qemu-img convert. */
async function qemuContent(file: string): Promise<Buffer> {
  await ok(run('qemu-img', ['convert', ...OBJECT, '--image-opts', keyed(file), '-O', 'raw', file + '.raw']), 'qemu-img convert')
  return readFileSync(file + '.raw')
}

async function assertClean(file: string): Promise<void> {
  const check = await run('qemu-img', ['check', ...OBJECT, '--image-opts', keyed(file)])
  assert.equal(check.code, 0, check.stdout + check.stderr)
  assert.match(check.stdout, /No errors were found on the image/)
}

let ready = false
before(() => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  writePatternedRaw(at('src.raw'), SIZE, 11)
  ready = true
})

describe('qimg creates legacy AES images as qemu-img does', () => {
  for (const [name, options] of [['encryption=on', 'encryption=on,encrypt.key-secret=sec0'], ['encrypt.format=aes', AES]] as const) {
    it(`${name}: the same output and the same bytes; info the same`, async (t) => {
      if (!needTools(t, 'qemu-img') || !ready) return
      const args = (file: string) => ['create', '-f', 'qcow2', ...OBJECT, '-o', options, file, '128M']
      const theirs = await run('qemu-img', args(`theirs-${name}.qcow2`), { cwd: dir })
      const ours = await qimg(args(`ours-${name}.qcow2`), { cwd: dir })
      assert.equal(ours.code, 0, ours.stderr)
      assert.equal(ours.stdout.replaceAll('ours-', 'theirs-'), theirs.stdout)
      assert.equal(firstDifference(readFileSync(at(`ours-${name}.qcow2`)), readFileSync(at(`theirs-${name}.qcow2`))), -1)
      for (const output of ['human', 'json']) {
        const a = await run('qemu-img', ['info', `--output=${output}`, `theirs-${name}.qcow2`], { cwd: dir })
        const b = await qimg(['info', `--output=${output}`, `theirs-${name}.qcow2`], { cwd: dir })
        assert.equal(b.stdout, a.stdout, `info --output=${output}`)
      }
      assert.match((await qimg(['info', `ours-${name}.qcow2`], { cwd: dir })).stdout, /encrypted: yes[\s\S]*encrypt:\n\s+format: aes/)
    })
  }

  it('with preallocation (qemu-img allows it: plain zeros under the encryption), extended L2, v2', async (t) => {
    if (!needTools(t, 'qemu-img') || !ready) return
    for (const extra of ['preallocation=metadata', 'cluster_size=16k,extended_l2=on', 'compat=0.10,cluster_size=4k']) {
      const args = (file: string) => ['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', `${AES},${extra}`, file, '16M']
      await ok(run('qemu-img', args(at('theirs-x.qcow2'))), 'qemu-img create')
      await ok(qimg(args(at('ours-x.qcow2'))), 'qimg create')
      assert.equal(firstDifference(readFileSync(at('ours-x.qcow2')), readFileSync(at('theirs-x.qcow2'))), -1, extra)
    }
    // full: qemu-img reads the preallocated clusters as noise; so does qimg (the same noise).
    const args = (file: string) => ['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', `${AES},preallocation=full`, file, '1M']
    await ok(run('qemu-img', args(at('theirs-full.qcow2'))), 'qemu-img create')
    await ok(qimg(args(at('ours-full.qcow2'))), 'qimg create')
    await assertClean(at('ours-full.qcow2'))
    const theirs = await qemuContent(at('theirs-full.qcow2'))
    assert.equal(firstDifference(await qemuContent(at('ours-full.qcow2')), theirs), -1)
    assert.notEqual(firstDifference(theirs, Buffer.alloc(theirs.length)), -1, 'qemu-img preallocates noise')
  })

  it('convert to an AES target: the same file as qemu-img convert makes', async (t) => {
    if (!needTools(t, 'qemu-img') || !ready) return
    const args = (file: string) => ['convert', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', AES, at('src.raw'), file]
    await ok(run('qemu-img', args(at('cv-theirs.qcow2'))), 'qemu-img convert')
    await ok(qimg(args(at('cv-ours.qcow2'))), 'qimg convert')
    assert.equal(firstDifference(readFileSync(at('cv-ours.qcow2')), readFileSync(at('cv-theirs.qcow2'))), -1)
  })

  it('compression and encryption: refused like qemu-img convert -c', async (t) => {
    if (!needTools(t, 'qemu-img') || !ready) return
    const args = (file: string) => ['convert', '-c', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', AES, at('src.raw'), file]
    const theirs = await run('qemu-img', args(at('c-theirs.qcow2')))
    const ours = await qimg(args(at('c-ours.qcow2')))
    assert.equal(theirs.code, 1)
    assert.equal(ours.code, 1)
    assert.equal(ours.stderr.replace(/^qimg: /, ''), theirs.stderr.replace(/^qemu-img: /, ''))
    // qemu-io 7.2 writes such a cluster compressed and NOT encrypted; qimg refuses the request.
    await ok(qimg(['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', AES, at('c.qcow2'), '1M']), 'create')
    const io = await qimg(['io', ...ioArgs(at('c.qcow2'), ['write -c 0 64k'])])
    assert.match(io.stdout, /^write failed: Operation not supported$/m)
  })
})

describe('qimg writes legacy AES images as qemu-io does', () => {
  it('into a new image: qemu-io reads the data, check clean, compare identical, bytes as qemu-io writes them', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io') || !ready) return
    await ok(qimg(['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', AES, at('w-ours.qcow2'), String(SIZE)]), 'create')
    copyFileSync(at('w-ours.qcow2'), at('w-theirs.qcow2'))
    await ok(qimg(['io', ...ioArgs(at('w-ours.qcow2'), WRITES)]), 'qimg io')
    await ok(run('qemu-io', ioArgs(at('w-theirs.qcow2'), WRITES)), 'qemu-io')
    const expected = applied(Buffer.alloc(SIZE))
    const reads = ['read -P 0 0 1000', 'read -P 0x5a 1000 1', 'read -P 0x09 1001 7', 'read -P 0x5a 1008 2992', 'read -P 0xa5 65000 70000', 'read -P 0 135000 69800',
      'read -P 0x0b 200k 64k', 'read -P 0 2M 4096', 'read -P 0x3c 2621500 700', 'read -P 0x08 3M 100', 'read -P 0x07 3145828 65436']
    const io = await ok(run('qemu-io', ioArgs(at('w-ours.qcow2'), reads)), 'qemu-io read')
    assert.doesNotMatch(io.stdout + io.stderr, /Pattern verification failed/)
    await assertClean(at('w-ours.qcow2'))
    writeFileSync(at('w-expected.raw'), expected)
    const cmp = await run('qemu-img', ['compare', ...OBJECT, '--image-opts', keyed(at('w-ours.qcow2')), `driver=raw,file.filename=${at('w-expected.raw')}`])
    assert.equal(cmp.stdout, 'Images are identical.\n', cmp.stderr)
    assert.equal(firstDifference(readFileSync(at('w-ours.qcow2')), readFileSync(at('w-theirs.qcow2'))), -1, 'the same file as qemu-io makes')
  })

  it('into a qemu-made image with data: qemu reads what qimg wrote, the bytes are qemu-io\'s', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io') || !ready) return
    await ok(run('qemu-img', ['convert', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', AES, at('src.raw'), at('q-ours.qcow2')]), 'qemu-img convert')
    copyFileSync(at('q-ours.qcow2'), at('q-theirs.qcow2'))
    await ok(qimg(['io', ...ioArgs(at('q-ours.qcow2'), WRITES)]), 'qimg io')
    await ok(run('qemu-io', ioArgs(at('q-theirs.qcow2'), WRITES)), 'qemu-io')
    const expected = applied(readFileSync(at('src.raw')))
    assert.equal(firstDifference(await qemuContent(at('q-ours.qcow2')), expected), -1)
    await assertClean(at('q-ours.qcow2'))
    assert.equal(firstDifference(readFileSync(at('q-ours.qcow2')), readFileSync(at('q-theirs.qcow2'))), -1)
    // And qimg reads its own writes back.
    await ok(qimg(['convert', ...OBJECT, '--image-opts', keyed(at('q-ours.qcow2')), '-O', 'raw', at('q-ours.qimg.raw')]), 'qimg convert')
    assert.equal(firstDifference(readFileSync(at('q-ours.qimg.raw')), expected), -1)
  })

  it('an AES overlay over an AES backing file (iotest 158): a partial cluster write copies the backing data', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io') || !ready) return
    await ok(run('qemu-img', ['convert', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', AES, at('src.raw'), at('base.qcow2')]), 'base')
    await ok(qimg(['create', '-q', '-u', '-f', 'qcow2', ...OBJECT, '-o', AES, '-b', at('base.qcow2'), '-F', 'qcow2', at('top.qcow2'), String(SIZE)]), 'overlay')
    const spec = `driver=qcow2,file.filename=${at('top.qcow2')},backing.driver=qcow2,backing.file.filename=${at('base.qcow2')},backing.encrypt.key-secret=sec0,encrypt.key-secret=sec0`
    await ok(qimg(['io', ...OBJECT, '--image-opts', spec, '-c', 'write -P 0xe 70000 1024']), 'qimg io')
    await ok(run('qemu-img', ['convert', ...OBJECT, '--image-opts', spec, '-O', 'raw', at('top.raw')]), 'qemu-img convert')
    const expected = readFileSync(at('src.raw')).fill(0xe, 70000, 71024)
    assert.equal(firstDifference(readFileSync(at('top.raw')), expected), -1)
  })

  it('amend compat=0.10 expands zero clusters into encrypted zeros (qemu-io reads zeros)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io') || !ready) return
    await ok(qimg(['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', AES, at('z.qcow2'), String(SIZE)]), 'create')
    await ok(qimg(['io', ...ioArgs(at('z.qcow2'), ['write -P 1 0 256k', 'write -z 64k 64k', 'write -z 1M 64k'])]), 'qimg io')
    await ok(qimg(['amend', ...OBJECT, '-o', 'compat=0.10', '--image-opts', keyed(at('z.qcow2'))]), 'amend')
    const io = await ok(run('qemu-io', ioArgs(at('z.qcow2'), ['read -P 1 0 64k', 'read -P 0 64k 64k', 'read -P 1 128k 128k', 'read -P 0 1M 64k'])), 'qemu-io read')
    assert.doesNotMatch(io.stdout + io.stderr, /Pattern verification failed/)
    await assertClean(at('z.qcow2'))
  })
})
