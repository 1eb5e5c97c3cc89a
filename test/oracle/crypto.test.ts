// Oracle: encrypted QCOW2 both ways. Images qemu-img encrypts (LUKS with several cipher, mode, IV
// generator and hash choices; legacy AES) read bit-exact through qimg, with the same `info` and
// `map`; images qimg encrypts (every AES size × mode × IV generator) pass `qemu-img check` and
// `qemu-img compare` with the secret; bad keys fail with BAD_KEY and change nothing.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, openSync, readFileSync, closeSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { run as runCli } from '../../src/cli/main.js'
import { openImage } from '../../src/node/open.js'
import { isImageError } from '../../src/errors.js'
import { QIMG, hasTool, needTools, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { firstDifference, pool, writePatternedRaw } from './images.js'

const root = tempDir('qimg-oracle-crypto-')
/** qemu-img jobs started in the background: settled before the directory goes. */
let background: Promise<unknown> = Promise.resolve()
after(async () => {
  await background.catch(() => undefined)
  root.cleanup()
})
const at = (name: string) => join(root.path, name)

const PASS = 'Tr0ub4dor&3 passphrase'
const OBJECT = ['--object', `secret,id=sec0,data=${PASS}`]
/** `--image-opts` string opening `file` with the secret. */
const keyed = (file: string) => `driver=qcow2,file.filename=${file},encrypt.key-secret=sec0`
const LUKS = (extra = '') => `encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10${extra ? ',' + extra : ''}`

/**
 * qemu-img with a LUKS target, retried when QEMU's PBKDF2 benchmark reads no CPU time
 * ("Unable to get accurate CPU usage": coarse thread clocks on a busy machine).
 */
async function qemuImgLuks(args: readonly string[], cwd?: string): Promise<RunResult> {
  for (let attempt = 1; ; attempt++) {
    const r = await run('qemu-img', args, cwd === undefined ? {} : { cwd })
    if (r.code === 0 || attempt === 5 || !r.stderr.includes('Unable to get accurate CPU usage')) return r
  }
}

/** The qimg CLI in this process. */
async function qimg(args: readonly string[]): Promise<RunResult> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, { out: (t) => { stdout += t }, err: (t) => { stderr += t } })
  return { stdout, stderr, code }
}

async function qimgOk(args: readonly string[]): Promise<RunResult> {
  const r = await qimg(args)
  assert.equal(r.code, 0, `qimg ${args.join(' ')}: ${r.stderr}`)
  return r
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')

/** No secret in anything a command printed. */
function assertNoSecret(r: RunResult): void {
  assert.ok(!r.stdout.includes(PASS) && !r.stderr.includes(PASS), 'the passphrase must never be printed')
}

/** Guest content of `file` through qimg (with the secret) equals `expected`. */
async function assertReads(file: string, expected: Buffer): Promise<void> {
  const out = file + '.qimg.raw'
  assertNoSecret(await qimgOk(['convert', ...OBJECT, '--image-opts', keyed(file), '-O', 'raw', out]))
  const got = readFileSync(out)
  assert.equal(firstDifference(got, expected), -1, `${file}: first difference`)
}

/** LUKS variants qemu-img makes (each costs QEMU's ~1 s PBKDF2 benchmark, so a chosen few). */
const QEMU_LUKS: [name: string, options: string][] = [
  ['default', LUKS()],
  ['aes128-cbc-essiv-md5-sha1-extl2', LUKS('encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=md5,encrypt.hash-alg=sha1,extended_l2=on')],
  ['aes192-xts-ripemd160-4k', LUKS('encrypt.cipher-alg=aes-192,encrypt.hash-alg=ripemd160,cluster_size=4096')],
  ['aes128-ctr-plain-sha512', LUKS('encrypt.cipher-alg=aes-128,encrypt.cipher-mode=ctr,encrypt.ivgen-alg=plain,encrypt.hash-alg=sha512')],
  ['aes256-ecb-md5-v2', LUKS('encrypt.cipher-mode=ecb,encrypt.hash-alg=md5,compat=0.10')],
]

// A source with data, text, single-byte runs and zero blocks, ending in a partial cluster.
const SOURCE_SIZE = 3 * 1024 * 1024 + 1536
const SMALL_SIZE = 256 * 1024 + 1536
let source: Buffer
/** qemu-img's images by case name (see QEMU_LUKS), being built in the background. */
const qemuMade = new Map<string, Promise<string>>()
let ready = false

before(async () => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  writePatternedRaw(at('src.raw'), SOURCE_SIZE, 7)
  writePatternedRaw(at('small.raw'), SMALL_SIZE, 9)
  source = readFileSync(at('src.raw'))
  ready = true
  // QEMU spends ~1 s of CPU benchmarking PBKDF2 per LUKS image: start them now, in the background.
  const jobs = [...QEMU_LUKS, ['aes', 'encrypt.format=aes,encrypt.key-secret=sec0'] as [string, string]].map(([name, options]) => async () => {
    const file = at(`qemu-${name}.qcow2`)
    const r = await qemuImgLuks(['convert', ...OBJECT, '-O', 'qcow2', '-o', options, at('src.raw'), file])
    if (r.code !== 0) throw new Error(`qemu-img convert -o ${options}: ${r.stderr}`)
    return file
  })
  const all = pool(2, jobs)
  background = all
  for (const [i, name] of [...QEMU_LUKS.map(([n]) => n), 'aes'].entries()) {
    const file = all.then((files) => files[i]!)
    file.catch(() => undefined) // awaited (and reported) by the tests that use it
    qemuMade.set(name, file)
  }
})


describe('images qimg encrypts, checked by qemu-img', () => {
  const hashes = ['sha256', 'sha1', 'sha512', 'md5', 'sha224', 'sha384', 'ripemd160']
  const combos: string[] = []
  for (const alg of ['aes-128', 'aes-192', 'aes-256']) {
    for (const mode of ['xts', 'cbc', 'ecb', 'ctr']) {
      for (const ivgen of ['plain', 'plain64', 'essiv']) combos.push(`encrypt.cipher-alg=${alg},encrypt.cipher-mode=${mode},encrypt.ivgen-alg=${ivgen},encrypt.hash-alg=${hashes[combos.length % hashes.length]}`)
    }
  }

  it(`every AES size × mode × IV generator (${combos.length}): qemu-img compare (and check) pass`, async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const failures: string[] = []
    await pool(3, combos.map((combo, i) => async () => {
      const file = at(`matrix-${i}.qcow2`)
      // iter-time 0: the minimum 1000 iterations, no benchmark (the result QEMU would reach too).
      const r = await qimg(['convert', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', LUKS(combo).replace('iter-time=10', 'iter-time=0'), at('small.raw'), file])
      // QEMU 7.2 aborts on key material that ends mid-sector (aes-192 outside XTS): refused.
      if (/aes-192,encrypt.cipher-mode=(cbc|ecb|ctr)/.test(combo)) {
        if (r.code !== 1 || !/qemu-img 7\.2 cannot create or open/.test(r.stderr)) failures.push(`${combo}: not refused: ${r.stderr}`)
        return
      }
      if (r.code !== 0) return void failures.push(`${combo}: convert: ${r.stderr}`)
      const cmp = await run('qemu-img', ['compare', ...OBJECT, '--image-opts', `driver=raw,file.filename=${at('small.raw')}`, keyed(file)])
      if (cmp.code !== 0 || cmp.stdout !== 'Images are identical.\n') failures.push(`${combo}: compare: ${cmp.stdout}${cmp.stderr}`)
      if (i % 4 === 0) {
        const check = await run('qemu-img', ['check', ...OBJECT, '--image-opts', keyed(file)])
        if (check.code !== 0) failures.push(`${combo}: check: ${check.stdout}${check.stderr}`)
      }
    }))
    assert.deepEqual(failures, [])
  })

  const LAYOUTS: [string, string][] = [
    ['default layout', ''],
    ['extended L2', 'extended_l2=on,cluster_size=32768'],
    ['512-byte clusters', 'cluster_size=512'],
    ['v2', 'compat=0.10'],
    ['external data file', 'data_file=DATA'],
  ]
  for (const [name, extra] of LAYOUTS) {
    it(`${name}: create, write, convert; qemu-img agrees, info is the same`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const slug = name.replace(/\W+/g, '-')
      const file = at(`qimg-${slug}.qcow2`)
      const created = await qimgOk(['create', '-f', 'qcow2', ...OBJECT, '-o', LUKS(extra.replace('DATA', at(`${slug}-data.raw`))), file, String(SOURCE_SIZE)])
      assertNoSecret(created)
      await qimgOk(['io', ...OBJECT, '--image-opts', keyed(file), '-c', 'write -P 0x11 0 100000', '-c', 'write -P 0x22 99999 3', '-c', 'write -z 4096 1000'])
      const expected = Buffer.alloc(SOURCE_SIZE)
      expected.fill(0x11, 0, 100000).fill(0x22, 99999, 100002).fill(0, 4096, 5096)
      const io = await run('qemu-io', [...OBJECT, '--image-opts', keyed(file), '-c', 'read -P 0x11 0 4096', '-c', 'read -P 0 4096 1000', '-c', 'read -P 0x11 5096 94903', '-c', 'read -P 0x22 99999 3', '-c', 'read -P 0 100002 4096'])
      assert.doesNotMatch(io.stdout, /verification failed/, io.stdout)
      assert.equal(io.code, 0, io.stderr)
      const check = await run('qemu-img', ['check', ...OBJECT, '--image-opts', keyed(file)])
      assert.equal(check.code, 0, check.stdout + check.stderr)
      const info = await run('qemu-img', ['info', '--output=json', file])
      assert.equal((await qimg(['info', '--output=json', file])).stdout, info.stdout)
      // convert into this layout from the source: qemu-img compare finds them identical.
      const converted = at(`qimg-${slug}-converted.qcow2`)
      await qimgOk(['convert', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', LUKS(extra.replace('DATA', at(`${slug}-converted-data.raw`))), at('small.raw'), converted])
      const cmp = await run('qemu-img', ['compare', ...OBJECT, '--image-opts', `driver=raw,file.filename=${at('small.raw')}`, keyed(converted)])
      assert.equal(cmp.stdout, 'Images are identical.\n', cmp.stderr)
      await assertReads(converted, readFileSync(at('small.raw')))
    })
  }

  it('create prints the Formatting line qemu-img prints', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    // An unknown secret fails right after the line: no PBKDF2 benchmark is needed to compare it.
    const options = LUKS('encrypt.hash-alg=sha1,encrypt.ivgen-hash-alg=sha256,encrypt.ivgen-alg=essiv,encrypt.cipher-mode=cbc,encrypt.cipher-alg=aes-128,lazy_refcounts=on').replace('key-secret=sec0', 'key-secret=nosuch')
    const args = ['create', '-f', 'qcow2', ...OBJECT, '-o', options, at('formatting.qcow2'), '1M']
    const [theirs, ours] = [await run('qemu-img', args), await qimg(args)]
    assert.match(theirs.stdout, /^Formatting '.*formatting\.qcow2', fmt=qcow2 encrypt\.format=luks encrypt\.key-secret=nosuch encrypt\.cipher-alg=aes-128 /)
    assert.equal(ours.stdout, theirs.stdout)
    assert.equal(ours.code, theirs.code)
    assert.equal(ours.stderr.replace(/^qimg: /, ''), theirs.stderr.replace(/^qemu-img: /, ''))
  })
})

describe('keys: wrong, missing, damaged', () => {
  let image = ''
  before(async () => {
    if (!ready) return
    image = at('keys.qcow2')
    await qimgOk(['convert', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', LUKS(), at('small.raw'), image])
  })

  it('a wrong passphrase is BAD_KEY, exit 1, and writes nothing', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const before = sha(image)
    const wrong = ['--object', 'secret,id=sec0,data=not the passphrase']
    const r = await qimg(['io', ...wrong, '--image-opts', keyed(image), '-c', 'write -P 0x77 0 64k'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /Invalid password, cannot unlock any keyslot/)
    assert.ok(!r.stderr.includes('not the passphrase'))
    assert.equal(sha(image), before)
    await assert.rejects(openImage(image, { writable: true, secret: async () => new TextEncoder().encode('nope') }), (e) => isImageError(e, 'BAD_KEY'))
    assert.equal(sha(image), before)
    // qemu-img agrees it is the wrong key.
    const theirs = await run('qemu-img', ['convert', ...wrong, '--image-opts', keyed(image), '-O', 'raw', at('never.raw')])
    assert.match(theirs.stderr, /Invalid password, cannot unlock any keyslot/)
  })

  it('a missing secret is BAD_KEY; info still works without it', async () => {
    if (!ready) return
    const before = sha(image)
    for (const args of [['io', '-c', 'write 0 512', image], ['convert', '-O', 'raw', image, at('never.raw')], ['map', image]]) {
      const r = await qimg(args)
      assert.equal(r.code, 1, args.join(' '))
      assert.match(r.stderr, /Parameter 'encrypt.key-secret' is required for cipher/)
    }
    const unknown = await qimg(['io', ...OBJECT, '--image-opts', image.replace(/^/, 'driver=qcow2,file.filename=') + ',encrypt.key-secret=sec9', '-c', 'write 0 512'])
    assert.match(unknown.stderr, /No secret with id 'sec9'/)
    assert.ok(!existsSync(at('never.raw')))
    assert.equal(sha(image), before)
    await assert.rejects(openImage(image), (e) => isImageError(e, 'BAD_KEY'))
    assert.equal((await qimg(['info', image])).code, 0)
  })

  it('on a terminal, a passphrase is asked for (without echo) when no secret is given', async (t) => {
    if (!needTools(t, 'script')) return
    // script(1) gives qimg a pseudo-terminal; the passphrase is typed once the prompt shows.
    const out = at('prompted.raw')
    const child = spawn('script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(QIMG)} convert -O raw ${JSON.stringify(image)} ${JSON.stringify(out)}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let transcript = ''
    let typed = false
    child.stdout.on('data', (chunk: Buffer) => {
      transcript += chunk.toString()
      if (!typed && transcript.includes('Passphrase: ')) {
        typed = true
        child.stdin.write(PASS + '\r')
      }
    })
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    assert.equal(code, 0, transcript)
    assert.match(transcript, /Disk image '.*keys\.qcow2' is encrypted\.\r?\nPassphrase: /)
    assert.ok(!transcript.includes(PASS), 'the passphrase is not echoed')
    assert.equal(firstDifference(readFileSync(out), readFileSync(at('small.raw'))), -1)
  })

  it('a damaged LUKS header is BAD_KEY, as qemu-img refuses it', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const file = at('damaged.qcow2')
    copyFileSync(image, file)
    const fd = openSync(file, 'r+')
    try {
      writeSync(fd, Buffer.from('XUKS'), 0, 4, 4 * 65536) // the LUKS area follows the L1 table
    } finally {
      closeSync(fd)
    }
    const before = sha(file)
    const r = await qimg(['convert', ...OBJECT, '--image-opts', keyed(file), '-O', 'raw', at('damaged.raw')])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /LUKS header at 0x40000: Volume is not in LUKS format/)
    await assert.rejects(openImage(file, { secret: async () => new TextEncoder().encode(PASS) }), (e) => isImageError(e, 'BAD_KEY'))
    const theirs = await run('qemu-img', ['info', file])
    assert.equal(theirs.code, 1)
    assert.match(theirs.stderr, /Volume is not in LUKS format/)
    assert.equal(sha(file), before)
  })

  it('compression and unavailable ciphers are refused with encryption', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const args = ['convert', '-c', ...OBJECT, '-f', 'raw', '-O', 'qcow2', '-o', LUKS(), at('small.raw'), at('compressed.qcow2')]
    const [theirs, ours] = [await run('qemu-img', args), await qimg(args)]
    assert.equal(ours.code, 1)
    assert.equal(theirs.code, 1)
    assert.equal(ours.stderr.replace(/^qimg: /, ''), theirs.stderr.replace(/^qemu-img: /, ''))
    // qemu-io 7.2 writes such a cluster compressed and NOT encrypted (plain text inside an
    // encrypted image); qimg refuses the request instead.
    const io = await qimg(['io', ...OBJECT, '--image-opts', keyed(image), '-c', 'write -c 0 64k'])
    assert.match(io.stdout, /^write failed: Operation not supported$/m)
    // Ciphers node:crypto lacks (QEMU has serpent, twofish, cast5): refused before any file exists.
    const twofish = await qimg(['create', '-f', 'qcow2', ...OBJECT, '-o', LUKS('encrypt.cipher-alg=twofish-256'), at('twofish.qcow2'), '1M'])
    assert.equal(twofish.code, 1)
    assert.match(twofish.stderr, /cipher twofish-256 in xts mode is not available in Node\.js crypto/)
    assert.ok(!existsSync(at('twofish.qcow2')))
  })
  it('preallocation with encryption: accepted as by qemu-img; convert writes the zeros (iotest 188)', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    assert.equal((await run('qemu-img', ['create', '-q', '-f', 'raw', at('empty.raw'), '1M'])).code, 0)
    for (const mode of ['metadata', 'falloc', 'full']) {
      const target = at(`prealloc-${mode}.qcow2`)
      const made = await qimg(['convert', '-O', 'qcow2', ...OBJECT, '-o', LUKS(`preallocation=${mode}`), at('empty.raw'), target])
      assert.equal(made.code, 0, made.stderr)
      const spec = keyed(target)
      const compare = await run('qemu-img', ['compare', ...OBJECT, '--image-opts', `driver=raw,file.filename=${at('empty.raw')}`, spec])
      assert.equal(compare.stdout, 'Images are identical.\n', `${mode}: ${compare.stderr}`)
      const check = await run('qemu-img', ['check', ...OBJECT, '--image-opts', spec])
      assert.equal(check.code, 0, `${mode}: ${check.stdout}${check.stderr}`)
    }
  })
})

describe('preallocation with LUKS, as qemu-img 7.2 allows it', () => {
  it('the same layout (map, check, file size); preallocated clusters hold plain zeros (read as noise)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    for (const mode of ['metadata', 'full']) {
      const theirs = at(`prealloc-${mode}-theirs.qcow2`)
      const ours = at(`prealloc-${mode}-ours.qcow2`)
      assert.equal((await qemuImgLuks(['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', LUKS(`preallocation=${mode}`), theirs, '1M'])).code, 0)
      await qimgOk(['create', '-q', '-f', 'qcow2', ...OBJECT, '-o', LUKS(`preallocation=${mode}`), ours, '1M'])
      assert.equal(readFileSync(ours).length, readFileSync(theirs).length, `${mode}: file size`)
      for (const args of [['map', '--output=json'], ['check']]) {
        const [a, b] = [await run('qemu-img', [...args, ...OBJECT, '--image-opts', keyed(theirs)]), await run('qemu-img', [...args, ...OBJECT, '--image-opts', keyed(ours)])]
        assert.equal(b.stdout, a.stdout, `${mode}: ${args.join(' ')}`)
        assert.equal(b.code, 0, b.stderr)
      }
    }
  })
})

describe('images qemu-img encrypts, read by qimg', () => {
  const built = qemuMade
  for (const [name] of [...QEMU_LUKS, ['aes']]) {
    it(`${name}: guest content bit-exact, info the same as qemu-img's`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const file = await built.get(name!)!
      await assertReads(file, source)
      for (const output of ['json', 'human']) {
        const theirs = await run('qemu-img', ['info', `--output=${output}`, file])
        const ours = await qimg(['info', `--output=${output}`, file])
        assert.equal(ours.code, 0, ours.stderr)
        assert.equal(ours.stdout, theirs.stdout, `info --output=${output}`)
      }
    })
  }

  it('map through the secret is the same as qemu-img map (data without offsets)', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const file = at('map.qcow2')
    copyFileSync(await built.get('default')!, file)
    await run('qemu-io', [...OBJECT, '--image-opts', keyed(file), '-c', 'write -z 64k 64k', '-c', 'discard 1M 128k'])
    for (const output of ['json', 'human']) {
      const args = ['map', `--output=${output}`, ...OBJECT, '--image-opts', keyed(file)]
      const [theirs, ours] = [await run('qemu-img', args), await qimg(args)]
      assert.equal(ours.stdout, theirs.stdout, `map --output=${output}`)
      assert.equal(ours.code, theirs.code, `map --output=${output} exit code (${ours.stderr})`)
    }
  })

  it('qimg writes into a qemu-made LUKS image: qemu-io reads the pattern, check is clean', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const file = at('write-into.qcow2')
    copyFileSync(await built.get('aes128-cbc-essiv-md5-sha1-extl2')!, file)
    // Unaligned in place, across clusters, into unallocated space, zeros: all through the secret.
    await qimgOk(['io', ...OBJECT, '--image-opts', keyed(file), '-c', 'write -P 0x5a 1000 3000', '-c', 'write -P 0xa5 65000 70000', '-c', 'write -P 0x3c 3145800 700', '-c', 'write -z 2M 4096'])
    const expected = Buffer.from(source)
    expected.fill(0x5a, 1000, 4000).fill(0xa5, 65000, 135000).fill(0x3c, 3145800, 3146500).fill(0, 2 * 1024 * 1024, 2 * 1024 * 1024 + 4096)
    assert.equal((await run('qemu-img', ['convert', ...OBJECT, '--image-opts', keyed(file), '-O', 'raw', file + '.qemu.raw'])).code, 0)
    assert.equal(firstDifference(readFileSync(file + '.qemu.raw'), expected), -1)
    const check = await run('qemu-img', ['check', ...OBJECT, '--image-opts', keyed(file)])
    assert.equal(check.code, 0, check.stdout + check.stderr)
  })

  it('legacy AES: written in place as qemu-io writes it, converted out to LUKS', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const file = at('aes-written.qcow2')
    const theirs = at('aes-written-by-qemu.qcow2')
    copyFileSync(await built.get('aes')!, file)
    copyFileSync(file, theirs)
    const commands = ['write -P 0x5a 1000 3000', 'write -P 0xa5 65000 70000', 'write -z 2M 4096']
    await qimgOk(['io', ...OBJECT, '--image-opts', keyed(file), ...commands.flatMap((c) => ['-c', c])])
    assert.equal((await run('qemu-io', [...OBJECT, '--image-opts', keyed(theirs), ...commands.flatMap((c) => ['-c', c])])).code, 0)
    assert.equal(sha(file), sha(theirs), 'the same bytes as qemu-io writes')
    // Rescue: convert out of it to LUKS, which qemu-img finds identical.
    const luks = at('rescued.qcow2')
    await qimgOk(['convert', ...OBJECT, '--image-opts', keyed(file), '-O', 'qcow2', '-o', LUKS(), luks])
    const cmp = await run('qemu-img', ['compare', ...OBJECT, '--image-opts', keyed(file), keyed(luks)])
    assert.equal(cmp.stdout, 'Images are identical.\n', cmp.stderr)
  })
})
