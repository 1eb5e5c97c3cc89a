// Oracle: vhdx against qemu-img/qemu-io 7.2. Images QEMU made and wrote read bit-exact by qimg
// (convert to raw; map, info and check output alike); create with every option gives QEMU's
// bytes but for the random GUIDs and sequence numbers; images qimg made and wrote (a seeded
// script through qimg io, and convert -O vhdx) pass qemu-img check and compare equal to raw.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { needTools, run, runOk, sharedWorkDir, qimgInProcess as qimg } from '../helpers/oracle.js'
import { ioScript } from '../helpers/io-script.js'
import { maskedVhdx } from '../vhdx/vhdx-helpers.js'

const MiB = 1024 * 1024
const work = sharedWorkDir('qimg-oracle-vhdx-', async () => {}, ['qemu-img', 'qemu-io'])

async function both(args: string[]): Promise<{ ours: { code: number; out: string }; theirs: { code: number; out: string } }> {
  const [o, t] = await Promise.all([
    run(process.execPath, [work.linked('qemu-img'), ...args], { cwd: work.dir }),
    run('qemu-img', args, { cwd: work.dir }),
  ])
  return { ours: { code: o.code, out: o.stdout + o.stderr }, theirs: { code: t.code, out: t.stdout + t.stderr } }
}

async function qemuIo(file: string, commands: string[], format = 'vhdx'): Promise<void> {
  await runOk('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), file])
}

async function sameAsQemu(img: string, format: string[]): Promise<void> {
  for (const command of [['map', '--output=json'], ['info', '--output=json'], ['map'], ['info'], ['check'], ['check', '--output=json']]) {
    const { ours, theirs } = await both([...command, ...format, img])
    assert.deepEqual(ours, theirs, command.join(' '))
  }
}

describe('vhdx images qemu-img made, read by qimg', () => {
  for (const options of ['subformat=dynamic', 'subformat=fixed', 'subformat=fixed,block_state_zero=off', 'block_size=1M,block_state_zero=off', 'block_size=2M,log_size=2M']) {
    for (const size of [MiB, 5.5 * MiB, 40 * MiB]) {
      it(`${options} ${size / MiB} MiB`, async (t) => {
        if (!needTools(t, 'qemu-img', 'qemu-io')) return
        assert.ok(work.ready())
        const tag = `${options.replaceAll(/[^a-z0-9]/g, '')}-${size}`
        const img = work.at(`q-${tag}.vhdx`)
        await runOk('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', options, img, String(size)])
        const writes = ['write -P 0x11 0 4k', `write -P 0x22 ${size - 512} 512`, `write -z ${Math.floor(size / 2 / 512) * 512} 64k`]
        if (size > MiB) writes.push(`write -P 0x33 ${2 * MiB - 1024} 3k`, `write -P 0x44 ${size - MiB - 4096} 1M`)
        await qemuIo(img, writes)
        const ours = work.at(`q-${tag}.o.raw`)
        const theirs = work.at(`q-${tag}.t.raw`)
        assert.equal((await qimg(['convert', '-f', 'vhdx', '-O', 'raw', img, ours])).code, 0)
        await runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', img, theirs])
        assert.ok(Buffer.compare(readFileSync(ours), readFileSync(theirs)) === 0, 'raw contents differ')
        await sameAsQemu(img, [])
        await sameAsQemu(img, ['-f', 'vhdx'])
      })
    }
  }
})

describe('vhdx create', () => {
  const optionSets = [[], ['-o', 'subformat=fixed'], ['-o', 'subformat=fixed,block_state_zero=off'], ['-o', 'block_state_zero=off'],
    ['-o', 'block_size=1M,log_size=3M'], ['-o', 'block_size=3000000,log_size=1'], ['-o', 'block_size=64M'], ['-o', 'block_size=300M']]
  for (const args of optionSets) {
    for (const size of ['0', '1', '10000001', '64M', '2G', '130G']) {
      if ((size === '130G' || size === '2G') && args.join('').includes('fixed')) continue
      it(`create ${args.join(' ')} ${size}`, async (t) => {
        if (!needTools(t, 'qemu-img')) return
        const name = `c${args.join('').replaceAll(/[^a-z0-9=]/g, '')}-${size}`
        const ours = await run(process.execPath, [work.linked('qemu-img'), 'create', '-f', 'vhdx', ...args, `${name}.o.vhdx`, size], { cwd: work.dir })
        const theirs = await run('qemu-img', ['create', '-f', 'vhdx', ...args, `${name}.t.vhdx`, size], { cwd: work.dir })
        assert.deepEqual({ ...ours, stdout: ours.stdout.replace('.o.vhdx', '.t.vhdx'), stderr: ours.stderr.replace('.o.vhdx', '.t.vhdx') }, theirs)
        if (theirs.code !== 0) return
        const a = readFileSync(work.at(`${name}.o.vhdx`))
        const b = readFileSync(work.at(`${name}.t.vhdx`))
        assert.equal(a.length, b.length)
        assert.ok(Buffer.compare(maskedVhdx(a), maskedVhdx(b)) === 0, 'images differ beyond GUIDs, sequence numbers and checksums')
        const o = await both(['info', '--output=json', `${name}.o.vhdx`])
        const q = await both(['info', '--output=json', `${name}.t.vhdx`])
        assert.equal(o.ours.out.replace('.o.vhdx', '.t.vhdx'), q.theirs.out)
      })
    }
  }
  it('-o help and bad options', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    for (const args of [
      ['create', '-f', 'vhdx', 'big.vhdx', '65T'], ['create', '-f', 'vhdx', '-o', 'log_size=0', 'x.vhdx', '1M'],
      ['create', '-f', 'vhdx', '-o', 'log_size=5G', 'x.vhdx', '1M'], ['create', '-f', 'vhdx', '-o', 'block_size=3M', 'x.vhdx', '1M'],
      ['create', '-f', 'vhdx', '-o', 'subformat=sparse', 'x.vhdx', '1M'], ['create', '-f', 'vhdx', '-o', 'block_state_zero=maybe', 'x.vhdx', '1M'],
      ['create', '-f', 'vhdx', '-o', 'help'],
    ]) {
      const { ours, theirs } = await both(args)
      assert.deepEqual(ours, theirs, args.join(' '))
    }
  })
})

describe('vhdx images qimg made and wrote', () => {
  for (const [seed, options] of [[1, 'subformat=dynamic'], [2, 'block_size=1M'], [3, 'subformat=fixed'], [4, 'subformat=fixed,block_state_zero=off'], [5, 'block_state_zero=off,block_size=2M']] as const) {
    it(`seed ${seed} ${options}`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const ours = work.at(`w${seed}.o.vhdx`)
      const raw = work.at(`w${seed}.raw`)
      const size = 9 * MiB + 512 * seed
      assert.equal((await qimg(['create', '-q', '-f', 'vhdx', '-o', options, ours, String(size)])).code, 0)
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', raw, String(size)])
      const commands = ioScript(seed, size, 40, 8192)
      const r = await qimg(['io', '-f', 'vhdx', ...commands.flatMap((c) => ['-c', c]), ours])
      assert.equal(r.code, 0, r.stderr)
      // vhdx has no discard (QEMU's succeeds doing nothing); on raw it would punch holes.
      await qemuIo(raw, commands.filter((c) => !c.startsWith('discard')), 'raw')
      assert.equal(await runOk('qemu-img', ['check', '-f', 'vhdx', ours]), 'No errors were found on the image.\n')
      assert.equal(await runOk('qemu-img', ['compare', '-f', 'vhdx', '-F', 'raw', ours, raw]), 'Images are identical.\n')
      await sameAsQemu(ours, ['-f', 'vhdx'])
      // And QEMU goes on writing what qimg wrote.
      await qemuIo(ours, ['write -P 0x5e 1M 3M'])
      await qemuIo(raw, ['write -P 0x5e 1M 3M'], 'raw')
      assert.equal(await runOk('qemu-img', ['compare', '-f', 'vhdx', '-F', 'raw', ours, raw]), 'Images are identical.\n')
    })
  }
})

describe('vhdx convert', () => {
  it('qcow2 to vhdx (each subformat) and back', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const src = work.at('conv.qcow2')
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', src, '37M'])
    await qemuIo(src, ['write -P 0x5a 0 64k', 'write -P 0x6b 3M 1M', 'write -z 4M 512k', 'write -P 0x7c 20M 9M', 'write -P 0x7d 37887k 1k'], 'qcow2')
    for (const extra of [[], ['-o', 'subformat=fixed'], ['-o', 'block_size=1M,block_state_zero=off'], ['-o', 'subformat=fixed,block_state_zero=off']]) {
      const tag = extra.join('').replaceAll(/[^a-z0-9]/g, '') || 'dynamic'
      const ours = work.at(`conv-${tag}.o.vhdx`)
      const theirs = work.at(`conv-${tag}.t.vhdx`)
      assert.equal((await qimg(['convert', '-O', 'vhdx', ...extra, src, ours])).code, 0)
      await runOk('qemu-img', ['convert', '-O', 'vhdx', ...extra, src, theirs])
      assert.equal(await runOk('qemu-img', ['check', ours]), 'No errors were found on the image.\n')
      assert.equal(await runOk('qemu-img', ['compare', src, ours]), 'Images are identical.\n')
      const a = readFileSync(ours)
      const b = readFileSync(theirs)
      assert.equal(a.length, b.length, 'convert -O vhdx makes a file of another size than qemu-img')
      const back = work.at(`conv-${tag}.back.qcow2`)
      assert.equal((await qimg(['convert', '-f', 'vhdx', '-O', 'qcow2', ours, back])).code, 0)
      assert.equal(await runOk('qemu-img', ['compare', src, back]), 'Images are identical.\n')
      const qback = work.at(`conv-${tag}.qback.qcow2`)
      await runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'qcow2', theirs, qback])
      const m1 = await runOk('qemu-img', ['map', '--output=json', back])
      assert.equal(m1, await runOk('qemu-img', ['map', '--output=json', qback]), 'vhdx to qcow2 allocates otherwise than qemu-img')
    }
  })
})
