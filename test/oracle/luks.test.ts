// Oracle: the standalone luks format both ways. Images qemu-img creates and qemu-io writes read
// bit-exact through qimg (with the same info); images qimg creates and writes read bit-exact
// through qemu-img, and qemu-img compare finds them identical; errors read as qemu-img's.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, existsSync, statSync } from 'node:fs'
import { needTools, qimg, run, runOk, sharedWorkDir } from '../helpers/oracle.js'
import { writePatternedRaw } from './images.js'

const OBJECT = ['--object', 'secret,id=sec0,data=abc']
const keyed = (file: string) => `driver=luks,file.filename=${file},key-secret=sec0`
const work = sharedWorkDir('qimg-oracle-luks-', async (dir) => {
  writePatternedRaw(`${dir}/pattern.raw`, 1 << 20, 7)
}, ['qemu-io', 'qemu-img'])

/** info without the random parts (uuid, iteration counts) and the file name line. */
function stable(text: string): string {
  return text.replace(/uuid: \S+|"uuid": "[^"]+"/g, 'UUID').replace(/(iters"?:) \d+/g, '$1 N')
}

async function toRaw(program: 'qemu-img' | 'qimg', file: string, out: string): Promise<Buffer> {
  const args = ['convert', ...OBJECT, '--image-opts', keyed(file), '-O', 'raw', out]
  if (program === 'qemu-img') await runOk('qemu-img', args)
  else {
    const r = await qimg(args)
    assert.equal(r.code, 0, r.stderr)
  }
  return readFileSync(out)
}

describe('luks format against qemu-img', () => {
  it('reads images qemu-img created and qemu-io wrote, bit-exact, with the same info', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const img = work.at('q.luks')
    await runOk('qemu-img', ['create', '-f', 'luks', ...OBJECT, '-o', 'key-secret=sec0,iter-time=10', img, '1M'])
    await runOk('qemu-io', [...OBJECT, '--image-opts', keyed(img), '-c', 'write -P 0x55 1000 5000', '-c', 'write -z 8192 4096', '-c', 'write -P 0x11 500000 70000', '-c', 'discard 65536 65536'])
    assert.deepEqual(await toRaw('qimg', img, work.at('q-qimg.raw')), await toRaw('qemu-img', img, work.at('q-qemu.raw')))
    for (const output of ['human', 'json']) {
      const ours = await qimg(['info', `--output=${output}`, img])
      const theirs = await run('qemu-img', ['info', `--output=${output}`, img])
      assert.equal(ours.code, 0, ours.stderr)
      assert.equal(stable(ours.stdout), stable(theirs.stdout))
    }
    // Through --image-opts the name is the json: one.
    const ours = await qimg(['info', ...OBJECT, '--image-opts', keyed(img)])
    const theirs = await run('qemu-img', ['info', ...OBJECT, '--image-opts', keyed(img)])
    assert.equal(stable(ours.stdout), stable(theirs.stdout))
  })

  it('reads non-default ciphers qemu-img made', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const cases = ['cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256,hash-alg=sha1', 'cipher-alg=aes-256,cipher-mode=cbc,ivgen-alg=plain', 'cipher-alg=aes-128,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha512']
    for (const [i, extra] of cases.entries()) {
      const img = work.at(`c${i}.luks`)
      await runOk('qemu-img', ['create', '-f', 'luks', ...OBJECT, '-o', `key-secret=sec0,iter-time=10,${extra}`, img, '256K'])
      await runOk('qemu-io', [...OBJECT, '--image-opts', keyed(img), '-c', 'write -P 0x5a 1536 70000'])
      assert.deepEqual(await toRaw('qimg', img, work.at(`c${i}-qimg.raw`)), await toRaw('qemu-img', img, work.at(`c${i}-qemu.raw`)), extra)
    }
  })

  it('creates and writes images qemu-img reads bit-exact; compare agrees', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const img = work.at('ours.luks')
    const created = await qimg(['create', '-f', 'luks', ...OBJECT, '-o', 'key-secret=sec0,iter-time=10', img, '1M'])
    assert.equal(created.code, 0, created.stderr)
    assert.equal(created.stdout, `Formatting '${img}', fmt=luks size=1048576 key-secret=sec0 iter-time=10\n`)
    assert.equal(statSync(img).size, 2068480 + (1 << 20))
    const io = await run(work.linked('qemu-io'), [...OBJECT, '--image-opts', keyed(img), '-c', 'write -P 0x66 1000 5000', '-c', 'write -z 20000 7000', '-c', 'write -P 0x77 300000 100000', '-c', 'discard 131072 65536'])
    assert.equal(io.code, 0, io.stderr)
    assert.deepEqual(await toRaw('qemu-img', img, work.at('o-qemu.raw')), await toRaw('qimg', img, work.at('o-qimg.raw')))
    const check = await run('qemu-io', [...OBJECT, '--image-opts', keyed(img), '-c', 'read -P 0x66 1000 5000', '-c', 'read -P 0 20000 7000', '-c', 'read -P 0x77 300000 100000'])
    assert.equal(check.code, 0)
    assert.doesNotMatch(check.stdout, /Pattern verification failed/)

    // convert -O luks from a raw file; qemu-img compare of the two.
    const conv = work.at('conv.luks')
    const r = await qimg(['convert', ...OBJECT, '-O', 'luks', '-o', 'key-secret=sec0,iter-time=10', work.at('pattern.raw'), conv])
    assert.equal(r.code, 0, r.stderr)
    await runOk('qemu-img', ['compare', ...OBJECT, '--image-opts', 'driver=raw,file.filename=' + work.at('pattern.raw'), keyed(conv)])
    assert.deepEqual(await toRaw('qemu-img', conv, work.at('conv.raw')), readFileSync(work.at('pattern.raw')))
    // A zero source: the zeros must be written encrypted (a new luks image does not read zeros).
    const zeroRaw = work.at('zero.raw')
    await runOk('qemu-img', ['create', '-f', 'raw', zeroRaw, '256K'])
    const zconv = work.at('zero.luks')
    assert.equal((await qimg(['convert', ...OBJECT, '-O', 'luks', '-o', 'key-secret=sec0,iter-time=10', zeroRaw, zconv])).code, 0)
    assert.deepEqual(await toRaw('qemu-img', zconv, work.at('zero-back.raw')), readFileSync(zeroRaw))
  })

  it('resizes as QEMU does (the file is payload + size)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const a = work.at('ra.luks')
    const b = work.at('rb.luks')
    await runOk('qemu-img', ['create', '-f', 'luks', ...OBJECT, '-o', 'key-secret=sec0,iter-time=10', a, '1M'])
    await runOk('qemu-img', ['create', '-f', 'luks', ...OBJECT, '-o', 'key-secret=sec0,iter-time=10', b, '1M'])
    const ours = await qimg(['resize', ...OBJECT, '--image-opts', keyed(a), '4000001'])
    assert.equal(ours.code, 0, ours.stderr)
    await runOk('qemu-img', ['resize', ...OBJECT, '--image-opts', keyed(b), '4000001'])
    assert.equal(statSync(a).size, statSync(b).size)
    assert.match((await qimg(['info', a])).stdout, /virtual size: 3\.81 MiB \(4000256 bytes\)/)
    const shrink = await qimg(['resize', ...OBJECT, '--image-opts', keyed(a), '1M'])
    assert.equal(shrink.code, 1)
    assert.match(shrink.stderr, /Use the --shrink option/)
    const meta = await qimg(['resize', '--preallocation=metadata', ...OBJECT, '--image-opts', keyed(a), '8M'])
    assert.match(meta.stderr, /Unsupported preallocation mode: metadata/)
  })

  it('fails as qemu-img does without the secret or with a wrong one', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const img = work.at('q.luks')
    const noKey = await run(work.linked('qemu-img'), ['convert', '-O', 'raw', img, work.at('x.raw')])
    const theirs = await run('qemu-img', ['convert', '-O', 'raw', img, work.at('x.raw')])
    assert.equal(noKey.code, 1)
    assert.equal(noKey.stderr, theirs.stderr)
    const wrongArgs = ['convert', '--object', 'secret,id=sec0,data=nope', '--image-opts', keyed(img), '-O', 'raw', work.at('x.raw')]
    const wrong = await run(work.linked('qemu-img'), wrongArgs)
    assert.equal(wrong.code, 1)
    assert.equal(wrong.stderr, (await run('qemu-img', wrongArgs)).stderr)
    assert.match((await qimg(wrongArgs)).stderr, /Invalid password, cannot unlock any keyslot/)
    // create without key-secret: the Formatting line, the error, and no file left.
    const gone = work.at('gone.luks')
    const c = await qimg(['create', '-f', 'luks', gone, '1M'])
    assert.equal(c.code, 1)
    assert.equal(c.stdout, `Formatting '${gone}', fmt=luks size=1048576\n`)
    assert.match(c.stderr, /Parameter 'key-secret' is required for cipher/)
    assert.equal(existsSync(gone), false)
  })

  it('prints the options and preallocates as qemu-img does', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    for (const args of [['create', '-f', 'luks', '-o', 'help'], ['create', '-f', 'luks', '-o', 'help', work.at('h.luks')]]) {
      assert.equal((await qimg(args)).stdout, (await run('qemu-img', args)).stdout)
    }
    for (const mode of ['full', 'metadata']) {
      const ours = work.at(`p-${mode}-ours.luks`)
      const theirs = work.at(`p-${mode}-theirs.luks`)
      const r = await qimg(['create', '-f', 'luks', ...OBJECT, '-o', `key-secret=sec0,iter-time=10,preallocation=${mode}`, ours, '1M'])
      assert.equal(r.stdout, `Formatting '${ours}', fmt=luks size=1048576 key-secret=sec0 iter-time=10 preallocation=${mode}\n`)
      await runOk('qemu-img', ['create', '-f', 'luks', ...OBJECT, '-o', `key-secret=sec0,iter-time=10,preallocation=${mode}`, theirs, '1M'])
      assert.equal(statSync(ours).size, statSync(theirs).size)
      assert.equal(statSync(ours).blocks, statSync(theirs).blocks, mode)
    }
  })
})
