// QCOW version 1 against qemu-img 7.2: images qemu-img made read bit-exact with equal info/map,
// images qimg made and wrote equal to what qemu-img sees, creation byte-identical.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { QIMG, needTools, qimg, run, runOk, tempDir } from '../helpers/oracle.js'
import { mulberry32 } from '../helpers/prng.js'

const SECRET = ['--object', 'secret,id=sec0,data=abc']
const AES_OPTS = (file: string) => ['--image-opts', `driver=qcow,file.filename=${file},encrypt.key-secret=sec0`]

async function qimgOk(args: string[], cwd: string): Promise<string> {
  const r = await qimg(args, { cwd })
  assert.equal(r.code, 0, `qimg ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/**
 * `qemu-img convert -c -O qcow`: qemu-img 7.2 writes every cluster, then its final zero-length
 * compressed write (the "EOF" signal for qcow2) fails with EINVAL in qcow_co_pwritev_compressed
 * and it exits 1 without a message. The image is complete; anything else is a real failure.
 */
async function qemuConvertCompressed(args: string[]): Promise<void> {
  const r = await run('qemu-img', ['convert', '-c', '-O', 'qcow', ...args])
  if (r.code === 0 || (r.code === 1 && r.stderr === '')) return
  throw new Error(`qemu-img convert -c -O qcow ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
}

function pattern(size: number, seed: number): Buffer {
  const next = mulberry32(seed)
  const out = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4096) if (next() % 3 !== 0) out.fill(next() & 0xff, i, Math.min(size, i + 4096 - (next() % 512)))
  return out
}

describe('qcow (v1) against qemu-img', () => {
  it('creates headers and L1 tables byte-identical to qemu-img', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const d = tempDir()
    try {
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', d.file('base.raw'), '1M'])
      for (const size of ['1', '512', '1M', '10M', '2G', '3000000001', '1T']) {
        await runOk('qemu-img', ['create', '-q', '-f', 'qcow', d.file('q.qcow'), size])
        const line = await qimgOk(['create', '-f', 'qcow', d.file('m.qcow'), size], d.path)
        assert.match(line, /^Formatting '.*m\.qcow', fmt=qcow size=\d+\n$/)
        assert.deepEqual(readFileSync(d.file('m.qcow')), readFileSync(d.file('q.qcow')), size)
      }
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', '-b', 'base.raw', '-F', 'raw', d.file('q.qcow'), '5M'])
      const line = await qimgOk(['create', '-f', 'qcow', '-b', 'base.raw', '-F', 'raw', 'm.qcow', '5M'], d.path)
      assert.equal(line, "Formatting 'm.qcow', fmt=qcow size=5242880 backing_file=base.raw backing_fmt=raw\n")
      assert.deepEqual(readFileSync(d.file('m.qcow')), readFileSync(d.file('q.qcow')))
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', ...SECRET, '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', d.file('q.qcow'), '3M'])
      const eline = await qimgOk(['create', '-f', 'qcow', ...SECRET, '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', 'm.qcow', '3M'], d.path)
      assert.equal(eline, "Formatting 'm.qcow', fmt=qcow size=3145728 encrypt.format=aes encrypt.key-secret=sec0\n")
      assert.deepEqual(readFileSync(d.file('m.qcow')), readFileSync(d.file('q.qcow')))
    } finally {
      d.cleanup()
    }
  })

  it('reads plain, backed, compressed and AES images qemu made, with equal info and map', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const d = tempDir()
    try {
      writeFileSync(d.file('src.raw'), pattern(3 * 1024 * 1024, 7))
      await runOk('qemu-img', ['convert', '-O', 'qcow', d.file('src.raw'), d.file('plain.qcow')])
      await qemuConvertCompressed([d.file('src.raw'), d.file('comp.qcow')])
      assert.match(await runOk('qemu-img', ['compare', d.file('comp.qcow'), d.file('src.raw')]), /identical/)
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', '-b', 'plain.qcow', '-F', 'qcow', d.file('over.qcow')])
      await runOk('qemu-io', ['-c', 'write -P 0x5a 4096 1536', '-c', 'write -P 0x11 1M 64k', d.file('over.qcow')])
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', ...SECRET, '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', d.file('aes.qcow'), '1M'])
      await runOk('qemu-io', [...SECRET, ...AES_OPTS(d.file('aes.qcow')), '-c', 'write -P 0x22 0 4k', '-c', 'write -P 0x23 70000 3000'])
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', ...SECRET, '-o', 'encryption=on,encrypt.key-secret=sec0', d.file('legacy.qcow'), '2M'])
      await runOk('qemu-io', [...SECRET, ...AES_OPTS(d.file('legacy.qcow')), '-c', 'write -P 0x31 4095 8193', '-c', 'write -P 0x32 1M 1M'])
      // A backed overlay whose clusters are 512 bytes (qemu-img's choice with a backing file), a
      // raw backing file, and a size that is no multiple of the cluster size.
      writeFileSync(d.file('base.raw'), pattern(1024 * 1024 + 1536, 11))
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', '-b', 'base.raw', '-F', 'raw', d.file('rawback.qcow'), '1049600'])
      await runOk('qemu-io', ['-f', 'qcow', '-c', 'write -P 0x44 100 1000', '-c', 'write -P 0x45 1048000 1600', d.file('rawback.qcow')])
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', d.file('odd.qcow'), '1000000'])
      await runOk('qemu-io', ['-f', 'qcow', '-c', 'write -P 0x46 995000 5000', '-c', 'write -c -P 0x47 0 4096', d.file('odd.qcow')])
      const keyed = new Set(['aes.qcow', 'legacy.qcow'])
      for (const name of ['plain.qcow', 'comp.qcow', 'over.qcow', 'aes.qcow', 'legacy.qcow', 'rawback.qcow', 'odd.qcow']) {
        const src = keyed.has(name) ? [...SECRET, ...AES_OPTS(d.file(name))] : [d.file(name)]
        await runOk('qemu-img', ['convert', '-O', 'raw', ...src, d.file('q.raw')])
        await qimgOk(['convert', '-O', 'raw', ...src, d.file('m.raw')], d.path)
        assert.deepEqual(readFileSync(d.file('m.raw')), readFileSync(d.file('q.raw')), name)
        for (const cmd of [['info', '--output=json', d.file(name)], ['map', '--output=json', ...src]]) {
          const q = await run('qemu-img', cmd, { cwd: d.path })
          const m = await qimg(cmd, { cwd: d.path })
          assert.equal(m.stdout, q.stdout, `${cmd.join(' ')}: ${m.stderr}`)
          assert.equal(m.code, q.code)
        }
      }
    } finally {
      d.cleanup()
    }
  })

  it('writes (seeded write/write -z/discard/write -c) as qemu-img reads them, and converts both ways', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const d = tempDir()
    try {
      for (const seed of [1, 2, 3]) {
        const size = 4 * 1024 * 1024
        await qimgOk(['create', '-q', '-f', 'qcow', 'w.qcow', String(size)], d.path)
        await qimgOk(['create', '-q', '-f', 'raw', 'w.raw', String(size)], d.path)
        const next = mulberry32(seed)
        const ops: string[] = []
        for (let i = 0; i < 40; i++) {
          const offset = (next() % (size / 512)) * 512
          const length = Math.min(size - offset, 512 * (1 + (next() % 40)))
          const kind = next() % 4
          if (kind === 0) ops.push(`write -z ${offset} ${length}`)
          else if (kind === 1) ops.push(`discard ${offset} ${length}`)
          else ops.push(`write -P ${next() & 0xff} ${offset} ${length}`)
        }
        ops.push(`write -c -P 0x77 ${1024 * 1024} 4096`)
        const args = ops.flatMap((op) => ['-c', op])
        await qimgOk(['io', '-f', 'qcow', ...args, 'w.qcow'], d.path)
        // qcow has no discard (QEMU changes nothing); raw's would punch holes, so the reference skips them.
        const rawArgs = ops.filter((op) => !op.startsWith('discard')).flatMap((op) => ['-c', op.replace('write -c', 'write')])
        await qimgOk(['io', '-f', 'raw', ...rawArgs, 'w.raw'], d.path)
        assert.match(await runOk('qemu-img', ['compare', '-f', 'qcow', '-F', 'raw', d.file('w.qcow'), d.file('w.raw')]), /identical/, `seed ${seed}`)
        // The same script through qemu-io gives the same map.
        await runOk('qemu-img', ['create', '-q', '-f', 'qcow', d.file('q.qcow'), String(size)])
        await runOk('qemu-io', ['-f', 'qcow', ...args, d.file('q.qcow')])
        assert.match(await runOk('qemu-img', ['compare', d.file('w.qcow'), d.file('q.qcow')]), /identical/, `seed ${seed}`)
        const qmap = await runOk('qemu-img', ['map', '--output=json', d.file('q.qcow')])
        assert.equal(await runOk('qemu-img', ['map', '--output=json', d.file('w.qcow')]), qmap, `seed ${seed}`)
      }
      await runOk('qemu-img', ['convert', '-O', 'qcow2', d.file('w.qcow'), d.file('w.qcow2')])
      await qimgOk(['convert', '-O', 'qcow', 'w.qcow2', 'back.qcow'], d.path)
      await runOk('qemu-img', ['convert', '-O', 'qcow', d.file('w.qcow2'), d.file('qback.qcow')])
      assert.deepEqual(readFileSync(d.file('back.qcow')), readFileSync(d.file('qback.qcow')))
      await qimgOk(['convert', '-c', '-O', 'qcow', 'w.qcow2', 'c.qcow'], d.path)
      assert.match(await runOk('qemu-img', ['compare', d.file('c.qcow'), d.file('w.raw')]), /identical/)
      await qimgOk(['convert', '-O', 'qcow2', 'c.qcow', 'c.qcow2'], d.path)
      assert.match(await runOk('qemu-img', ['compare', d.file('c.qcow2'), d.file('w.raw')]), /identical/)
    } finally {
      d.cleanup()
    }
  })

  it('writes encrypted and backed images qemu-img reads as qemu-io\'s writes', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const d = tempDir()
    try {
      writeFileSync(d.file('base.raw'), pattern(2 * 1024 * 1024, 5))
      const scripts: [string, string[]][] = [
        ['aes', ['write -P 0x61 0 4096', 'write -P 0x62 5000 3000', 'write -z 6000 10000', 'write -P 0x63 1048575 2', 'write -P 0x64 0 512']],
        ['backed', ['write -P 0x71 100 1000', 'write -P 0x72 65536 70000', 'write -z 300000 5000', 'write -P 0x73 2096000 1152']],
      ]
      for (const [kind, ops] of scripts) {
        const args = ops.flatMap((op) => ['-c', op])
        const made = kind === 'aes'
          ? ['-f', 'qcow', ...SECRET, '-o', 'encrypt.format=aes,encrypt.key-secret=sec0']
          : ['-f', 'qcow', '-b', 'base.raw', '-F', 'raw']
        await qimgOk(['create', '-q', ...made, 'm.qcow', '2M'], d.path)
        await runOk('qemu-img', ['create', '-q', ...made, d.file('q.qcow'), '2M'], { cwd: d.path })
        const open = (file: string) => kind === 'aes' ? [...SECRET, ...AES_OPTS(d.file(file))] : ['-f', 'qcow', d.file(file)]
        await qimgOk(['io', ...open('m.qcow'), ...args], d.path)
        await runOk('qemu-io', [...open('q.qcow'), ...args], { cwd: d.path })
        // Both ways: qemu-img reads qimg's image as qemu-io's, and qimg reads qemu-io's as qemu-img does.
        await runOk('qemu-img', ['convert', '-O', 'raw', ...open('m.qcow').filter((a) => a !== '-f' && a !== 'qcow'), d.file('m.raw')])
        await runOk('qemu-img', ['convert', '-O', 'raw', ...open('q.qcow').filter((a) => a !== '-f' && a !== 'qcow'), d.file('q.raw')])
        assert.deepEqual(readFileSync(d.file('m.raw')), readFileSync(d.file('q.raw')), kind)
        await qimgOk(['convert', '-O', 'raw', ...open('q.qcow').filter((a) => a !== '-f' && a !== 'qcow'), d.file('mq.raw')], d.path)
        assert.deepEqual(readFileSync(d.file('mq.raw')), readFileSync(d.file('q.raw')), kind)
        assert.equal(await runOk('qemu-img', ['map', '--output=json', ...open('m.qcow')]), await runOk('qemu-img', ['map', '--output=json', ...open('q.qcow')]), kind)
        if (kind === 'aes') {
          // The sectors as stored: same key, same IVs, same layout, so the same ciphertext.
          assert.deepEqual(readFileSync(d.file('m.qcow')), readFileSync(d.file('q.qcow')))
          // qemu-io 7.2 would store a compressed cluster unencrypted; qimg refuses it.
          const c = await qimg(['io', ...open('m.qcow'), '-c', 'write -c 0 4096'], { cwd: d.path })
          assert.match(c.stdout, /^write failed: Operation not supported$/m)
        } else {
          assert.match(await runOk('qemu-img', ['compare', d.file('m.qcow'), d.file('q.qcow')]), /identical/)
        }
      }
    } finally {
      d.cleanup()
    }
  })

  it('says what qemu-img says of hostile headers and refused create options (qimg run as qemu-img)', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const d = tempDir()
    try {
      symlinkSync(QIMG, d.file('qemu-img'))
      const both = async (args: string[], what: string) => {
        const q = await run('qemu-img', args, { cwd: d.path })
        const m = await run(process.execPath, [d.file('qemu-img'), ...args], { cwd: d.path })
        assert.equal(m.stderr, q.stderr, what)
        assert.equal(m.stdout, q.stdout, what)
        assert.equal(m.code, q.code, what)
      }
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', d.file('base.qcow'), '1M'])
      const base = readFileSync(d.file('base.qcow'))
      // [offset, byte width, value]: every check qcow_open makes, in its order.
      const pokes: [string, [number, number, bigint][]][] = [
        ['magic', [[0, 4, 0x12345678n]]], ['version 2', [[4, 4, 2n]]], ['version 7', [[4, 4, 7n]]],
        ['size 1', [[24, 8, 1n]]], ['cluster_bits 8', [[32, 1, 8n]]], ['cluster_bits 17', [[32, 1, 17n]]],
        ['l2_bits 5', [[33, 1, 5n]]], ['l2_bits 14', [[33, 1, 14n]]], ['crypt_method 2', [[36, 4, 2n]]],
        ['size near 2^64', [[24, 8, 0xfffffffffffff000n]]], ['L1 over INT_MAX', [[24, 8, 1n << 48n], [32, 1, 9n], [33, 1, 6n]]],
        ['backing name too long', [[8, 8, 48n], [16, 4, 1024n]]],
      ]
      for (const [what, changes] of pokes) {
        const bytes = Buffer.from(base)
        for (const [at, width, value] of changes) {
          for (let i = 0; i < width; i++) bytes[at + i] = Number((value >> BigInt(8 * (width - 1 - i))) & 0xffn)
        }
        writeFileSync(d.file('h.qcow'), bytes)
        await both(['info', '--image-opts', 'driver=qcow,file.filename=h.qcow'], what)
      }
      for (const options of ['encryption=on', 'encrypt.format=aes', 'encryption=on,encrypt.format=aes,encrypt.key-secret=sec0',
        'encrypt.format=luks,encrypt.key-secret=sec0', 'encrypt.format=foo', 'encryption=yes,encrypt.key-secret=sec0', 'encryption=bar']) {
        await both(['create', '-f', 'qcow', ...SECRET, '-o', options, 'never.qcow', '1M'], options)
      }
      await both(['create', '-f', 'qcow', 'never.qcow', '0'], 'size 0')
    } finally {
      d.cleanup()
    }
  })

  it('refuses check and resize with qemu-img\'s messages; probes v1 as qcow', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const d = tempDir()
    try {
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow', d.file('a.qcow'), '1M'])
      for (const cmd of [['check', d.file('a.qcow')], ['resize', d.file('a.qcow'), '2M']]) {
        const q = await run('qemu-img', cmd)
        const m = await qimg(cmd)
        assert.equal(m.code, q.code, cmd[0])
        assert.equal(m.stderr.replace(/^qimg:/, 'qemu-img:'), q.stderr, cmd[0])
      }
      assert.match(await qimgOk(['info', d.file('a.qcow')], d.path), /file format: qcow\n/)
    } finally {
      d.cleanup()
    }
  })
})
