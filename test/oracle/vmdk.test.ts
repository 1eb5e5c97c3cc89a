// Oracle: VMDK against qemu-img/qemu-io 7.2, both ways, for every subformat qemu-img creates.
// Images QEMU made and wrote read bit-exact by qimg (convert to raw), with info (human and JSON),
// map and check answered alike; create writes the files qemu-img writes (the random CID aside)
// and prints what it prints; the same qemu-io script run by qimg io writes the same files (a
// streamOptimized one the same content: the deflate streams may differ) and output; convert
// -O vmdk from qcow2 reads back equal through qemu-img compare; a delta chain (create -b).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { filterQemuIo, needTools, qimg, run, runOk, sharedWorkDir } from '../helpers/oracle.js'
import { systemZlibVersion } from '../../src/node/system-zlib.js'
import { writePatternedRaw } from './images.js'

const work = sharedWorkDir('qimg-oracle-vmdk-', async () => {}, [])

const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized']

/** A fresh pair of directories, ours and theirs, so file names (in descriptors) are the same. */
function pair(name: string): { ours: string; theirs: string } {
  const ours = work.at(`${name}.o`)
  const theirs = work.at(`${name}.t`)
  for (const d of [ours, theirs]) {
    rmSync(d, { recursive: true, force: true })
    mkdirSync(d)
  }
  return { ours, theirs }
}

/**
 * The file with its descriptor's CID set to `cid` as text, laid out again (an embedded descriptor
 * in its 20 sectors at 0x200, a descriptor file on its own): the CID is random in both tools.
 */
function withCidText(bytes: Uint8Array, cid: string): Buffer {
  const buf = Buffer.from(bytes)
  const embedded = buf.length >= 4 && buf.readUInt32BE(0) === 0x4b444d56
  const start = embedded ? 0x200 : 0
  const size = embedded ? 20 * 512 : buf.length
  const region = buf.subarray(start, start + size)
  const nul = region.indexOf(0)
  const text = region.subarray(0, nul < 0 ? region.length : nul).toString('latin1')
  const replaced = Buffer.from(text.replace(/(^|\n)CID=[0-9a-f]+\n/, `$1CID=${cid}\n`), 'latin1')
  // The NUL padding after the text (QEMU pads a rewritten descriptor to its buffer) keeps its end.
  const pad = Math.max(0, region.length - text.length - (nul < 0 ? 0 : replaced.length - text.length))
  const padded = Buffer.concat([replaced, Buffer.alloc(nul < 0 ? 0 : pad)])
  return Buffer.concat([buf.subarray(0, start), padded, buf.subarray(start + size)])
}

function cidOf(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('latin1')
  return /(?:^|\n)CID=([0-9a-f]+)\n/.exec(text)![1]!
}

/** Every file of `theirs` equals ours, once our CID is theirs. */
function assertSameFiles(ours: string, theirs: string, what: string): void {
  assert.deepEqual(readdirSync(ours).sort(), readdirSync(theirs).sort(), `${what}: file names`)
  for (const name of readdirSync(theirs)) {
    if (statSync(join(theirs, name)).size > 64 * 1024 * 1024) {
      // A flat extent: no descriptor in it, compared by cmp (it may be GiBs).
      assert.equal(execFileSync('cmp', [join(ours, name), join(theirs, name)]).length, 0, `${what}: ${name} differs`)
      continue
    }
    let t: Buffer = readFileSync(join(theirs, name))
    let o: Buffer = readFileSync(join(ours, name))
    // Both CIDs written as the same text (their lengths in hex differ now and then).
    if (/(?:^|\n)CID=/.test(t.subarray(0, 0x200 + 10240).toString('latin1'))) {
      o = withCidText(o, cidOf(t))
      t = withCidText(t, cidOf(t))
    }
    assert.equal(o.length, t.length, `${what}: ${name} length`)
    assert.ok(o.equals(t), `${what}: ${name} differs`)
  }
}

/** qimg's and qemu-img's raw conversions of `image` are the same bytes (cmp: they may be GiBs). */
async function sameRaw(dir: string, image: string): Promise<void> {
  const ours = join(dir, `${image}.qimg.raw`)
  const theirs = join(dir, `${image}.qemu.raw`)
  const o = await qimg(['convert', '-O', 'raw', image, ours], { cwd: dir })
  assert.equal(o.code, 0, o.stderr)
  await runOk('qemu-img', ['convert', '-O', 'raw', image, theirs], { cwd: dir })
  const r = await run('cmp', [ours, theirs])
  rmSync(ours)
  rmSync(theirs)
  assert.equal(r.code, 0, `raw contents differ: ${r.stdout}${r.stderr}`)
}

/** qimg's and qemu-img's answers for the same command in `dir`. */
async function both(dir: string, args: string[]): Promise<{ ours: string; theirs: string }> {
  const [o, t] = await Promise.all([qimg(args, { cwd: dir }), run('qemu-img', args, { cwd: dir })])
  return { ours: `${o.code}\n${o.stdout}${o.stderr.replaceAll('qimg:', 'qemu-img:')}`, theirs: `${t.code}\n${t.stdout}${t.stderr}` }
}

const GiB = 1024 * 1024 * 1024

/** Big enough to cross a twoGbMaxExtent boundary, small elsewhere (raw copies are compared). */
function sizeFor(subformat: string): number {
  return subformat.startsWith('twoGb') ? 2 * GiB + 8 * 1024 * 1024 : 64 * 1024 * 1024
}

/** A script of writes: data, zeros, across the 2 GiB extent boundary, rewrites. */
function script(size: number, stream: boolean): string[] {
  if (stream) return ['write -P 0x11 0 64k', 'write -c -P 0x12 192k 64k', `write -P 0x13 ${size - 65536} 64k`, 'write -P 0x14 1M 4k', 'write -P 0x15 0 64k']
  const middle = size > 2 * GiB ? 2 * GiB - 1024 * 1024 : size / 2 - 1024 * 1024 // across the extents' boundary
  return ['write -P 0x11 0 64k', 'write -P 0x22 70k 5k', 'write -z 1M 128k', `write -P 0x33 ${middle} 2M`, 'write -z 100k 4k', `write -P 0x44 ${size - 1024 * 1024} 1M`, 'write -P 0x55 0 4k', 'write -z -u 2M 1M']
}

describe('vmdk images qemu-img made and qemu-io wrote, read by qimg', () => {
  for (const subformat of SUBFORMATS) {
    for (const zeroed of subformat.includes('Flat') ? ['off'] : ['off', 'on']) {
      it(`${subformat} zeroed_grain=${zeroed}`, async (t) => {
        if (!needTools(t, 'qemu-img', 'qemu-io')) return
        assert.ok(work.ready())
        const { theirs: dir } = pair(`read-${subformat}-${zeroed}`)
        const size = sizeFor(subformat)
        await runOk('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat},zeroed_grain=${zeroed}`, 'd.vmdk', String(size)], { cwd: dir })
        await run('qemu-io', ['-f', 'vmdk', ...script(size, subformat === 'streamOptimized').flatMap((c) => ['-c', c]), 'd.vmdk'], { cwd: dir })
        await sameRaw(dir, 'd.vmdk')
        for (const command of [['info'], ['info', '--output=json'], ['map'], ['map', '--output=json'], ['check'], ['check', '--output=json'], ['check', '-r', 'leaks']]) {
          const { ours, theirs } = await both(dir, [...command, 'd.vmdk'])
          assert.equal(ours, theirs, command.join(' '))
        }
      })
    }
  }
})

describe('vmdk create as qemu-img', () => {
  const cases: string[][] = [
    [], ['-o', 'subformat=monolithicFlat'], ['-o', 'subformat=streamOptimized'], ['-o', 'subformat=twoGbMaxExtentSparse'],
    ['-o', 'subformat=twoGbMaxExtentFlat'], ['-o', 'adapter_type=lsilogic,hwversion=7,toolsversion=123'],
    ['-o', 'compat6=on,zeroed_grain=on'], ['-o', 'adapter_type=legacyESX,subformat=twoGbMaxExtentSparse,zeroed_grain=on'],
    ['-o', 'adapter_type=buslogic,subformat=streamOptimized'],
    // Refusals, message for message.
    ['-o', 'adapter_type=scsi'], ['-o', 'subformat=vmfs'], ['-o', 'compat6=on,hwversion=7'], ['-o', 'subformat=monolithicFlat,zeroed_grain=on'],
  ]
  for (const args of cases) {
    const refusal = cases.indexOf(args) >= cases.length - 4
    for (const size of refusal ? ['1M'] : ['0', '1000', '1M', '5G']) {
      it(`create ${args.join(' ')} ${size}`, async (t) => {
        if (!needTools(t, 'qemu-img')) return
        const { ours, theirs } = pair(`create-${args.join('')}-${size}`)
        const o = await qimg(['create', '-f', 'vmdk', ...args, 'd.vmdk', size], { cwd: ours })
        const q = await run('qemu-img', ['create', '-f', 'vmdk', ...args, 'd.vmdk', size], { cwd: theirs })
        assert.deepEqual({ code: o.code, out: o.stdout + o.stderr.replaceAll('qimg:', 'qemu-img:') }, { code: q.code, out: q.stdout + q.stderr })
        assertSameFiles(ours, theirs, 'create')
        if (q.code === 0 && size !== '0') {
          for (const command of [['info', '--output=json'], ['map', '--output=json']]) {
            const a = await both(ours, [...command, 'd.vmdk'])
            const b = await both(theirs, [...command, 'd.vmdk'])
            const dropCid = (s: string) => s.replace(/"cid": \d+/, '"cid": X').replace(/"actual-size": \d+/, '"actual-size": X')
            assert.equal(dropCid(a.ours), dropCid(b.theirs), `${command.join(' ')} of our image by qimg and theirs by qemu-img`)
            assert.equal(dropCid(a.theirs), dropCid(b.theirs), `${command.join(' ')} of our image by qemu-img`)
          }
        }
      })
    }
  }
  it('-o help, the Formatting line of every option, backing file refusals', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const { ours, theirs } = pair('create-help')
    for (const args of [['-o', 'help'], ['-o', 'help', 'x.vmdk']]) {
      const o = await qimg(['create', '-f', 'vmdk', ...args], { cwd: ours })
      const q = await run('qemu-img', ['create', '-f', 'vmdk', ...args], { cwd: theirs })
      assert.equal(o.stdout, q.stdout, args.join(' '))
    }
    for (const dir of [ours, theirs]) {
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', 'q.qcow2', '1M'], { cwd: dir })
      await runOk('qemu-img', ['create', '-q', '-f', 'vmdk', 'base.vmdk', '1M'], { cwd: dir })
    }
    for (const args of [['-b', 'q.qcow2', '-F', 'qcow2'], ['-u', '-b', 'q.qcow2', '-F', 'vmdk'], ['-o', 'subformat=monolithicFlat', '-b', 'base.vmdk', '-F', 'vmdk'], ['-b', 'base.vmdk', '-F', 'vmdk', '-o', 'adapter_type=ide,hwversion=4,toolsversion=1,zeroed_grain=off,compat6=off']]) {
      const o = await qimg(['create', '-f', 'vmdk', ...args, 'd.vmdk', '1M'], { cwd: ours })
      const q = await run('qemu-img', ['create', '-f', 'vmdk', ...args, 'd.vmdk', '1M'], { cwd: theirs })
      assert.deepEqual({ code: o.code, out: o.stdout + o.stderr.replaceAll('qimg:', 'qemu-img:') }, { code: q.code, out: q.stdout + q.stderr }, args.join(' '))
    }
  })
})

describe('vmdk written by qimg io as by qemu-io', () => {
  for (const subformat of SUBFORMATS) {
    for (const zeroed of subformat.includes('Flat') ? ['off'] : ['off', 'on']) {
      it(`${subformat} zeroed_grain=${zeroed}`, async (t) => {
        if (!needTools(t, 'qemu-img', 'qemu-io')) return
        const { ours, theirs } = pair(`io-${subformat}-${zeroed}`)
        const size = sizeFor(subformat)
        await runOk('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', `subformat=${subformat},zeroed_grain=${zeroed}`, 'd.vmdk', String(size)], { cwd: theirs })
        for (const name of readdirSync(theirs)) copyFileSync(join(theirs, name), join(ours, name))
        const commands = script(size, subformat === 'streamOptimized').flatMap((c) => ['-c', c])
        const o = await qimg(['io', '-f', 'vmdk', ...commands, 'd.vmdk'], { cwd: ours })
        const q = await run('qemu-io', ['-f', 'vmdk', ...commands, 'd.vmdk'], { cwd: theirs })
        // qemu-io's error_report line for a rewrite of a streamOptimized grain is QEMU's own.
        const theirsOut = q.stdout + q.stderr.replace('qemu-io: Could not write to allocated cluster for streamOptimized\n', '')
        assert.equal(filterQemuIo(o.stdout + o.stderr), filterQemuIo(theirsOut))
        if (subformat === 'streamOptimized') {
          // zlib streams are not QEMU's byte for byte: the content, map and check must agree.
          assert.equal((await run('qemu-img', ['compare', '-f', 'vmdk', '-F', 'vmdk', join(ours, 'd.vmdk'), join(theirs, 'd.vmdk')])).code, 0)
          for (const command of [['map', '--output=json'], ['check']]) {
            const a = await run('qemu-img', [...command, 'd.vmdk'], { cwd: ours })
            const b = await run('qemu-img', [...command, 'd.vmdk'], { cwd: theirs })
            assert.equal(a.stdout + a.stderr, b.stdout + b.stderr, command.join(' '))
          }
        } else {
          assertSameFiles(ours, theirs, 'io')
        }
      })
    }
  }
})

describe('convert -O vmdk by qimg, read by qemu-img', () => {
  for (const subformat of SUBFORMATS) {
    it(subformat, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const { ours: dir } = pair(`convert-${subformat}`)
      await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', String(2 * GiB + 5 * 1024 * 1024)], { cwd: dir })
      await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x6b 1500k 100k', '-c', `write -P 0x7c ${2 * GiB - 65536} 192k`, '-c', `write -P 0x7d ${2 * GiB + 5 * 1024 * 1024 - 512} 512`, 'src.qcow2'], { cwd: dir })
      const r = await qimg(['convert', '-O', 'vmdk', '-o', `subformat=${subformat}`, 'src.qcow2', 'd.vmdk'], { cwd: dir })
      assert.equal(r.code, 0, r.stderr)
      const compare = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vmdk', 'src.qcow2', 'd.vmdk'], { cwd: dir })
      assert.equal(compare.code, 0, compare.stdout + compare.stderr)
      assert.equal((await run('qemu-img', ['check', 'd.vmdk'], { cwd: dir })).code, 0)
      const info = JSON.parse((await runOk('qemu-img', ['info', '--output=json', 'd.vmdk'], { cwd: dir })))
      assert.equal(info['format-specific'].data['create-type'], subformat)
      const ourInfo = await both(dir, ['info', '--output=json', 'd.vmdk'])
      assert.equal(ourInfo.ours, ourInfo.theirs)
      // And qemu-img's convert of the same source reads the same through qimg.
      await runOk('qemu-img', ['convert', '-O', 'vmdk', '-o', `subformat=${subformat}`, 'src.qcow2', 'q.vmdk'], { cwd: dir })
      assert.equal((await qimg(['compare', 'd.vmdk', 'q.vmdk'], { cwd: dir })).code, 0)
      const mapOurs = await both(dir, ['map', '--output=json', 'd.vmdk'])
      assert.equal(mapOurs.ours, mapOurs.theirs)
    })
  }
})

describe('convert -O vmdk -o subformat=streamOptimized writes the file qemu-img writes', () => {
  it('patterned, zero and incompressible grains: the same bytes, the random CID aside', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    if (systemZlibVersion() === undefined) {
      t.skip('the optional native addon qimg_zlib is not built (npm run prepare builds it): qimg uses Node\'s zlib')
      return
    }
    const { ours, theirs } = pair('stream-identical')
    const source = work.at('stream-identical.raw')
    writePatternedRaw(source, 5 * 1024 * 1024 + 12345, 7)
    // Whole grains of data deflate cannot shrink (stored blocks: a stream longer than the grain).
    const data = readFileSync(source)
    for (let at = 1024 * 1024, n = 0; at < 1024 * 1024 + 256 * 1024; at += 32, n++) createHash('sha256').update(String(n)).digest().copy(data, at)
    writeFileSync(source, data)
    const o = await qimg(['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', source, 'd.vmdk'], { cwd: ours })
    assert.equal(o.code, 0, o.stderr)
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', source, 'd.vmdk'], { cwd: theirs })
    assertSameFiles(ours, theirs, 'streamOptimized convert')
    assert.equal((await run('qemu-img', ['compare', '-f', 'raw', source, join(ours, 'd.vmdk')])).code, 0)
  })
})

describe('vmdk delta chains (parentFileNameHint)', () => {
  it('create -b, writes through the chain, info and convert as qemu-img', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const { ours, theirs } = pair('chain')
    for (const dir of [ours, theirs]) {
      await runOk('qemu-img', ['create', '-q', '-f', 'vmdk', 'base.vmdk', '4M'], { cwd: dir })
      await runOk('qemu-io', ['-f', 'vmdk', '-c', 'write -P 0x21 0 1M', 'base.vmdk'], { cwd: dir })
    }
    // A fixed base CID, so both overlays name the same parentCID.
    copyFileSync(join(theirs, 'base.vmdk'), join(ours, 'base.vmdk'))
    const o = await qimg(['create', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', 'top.vmdk'], { cwd: ours })
    const q = await run('qemu-img', ['create', '-f', 'vmdk', '-b', 'base.vmdk', '-F', 'vmdk', 'top.vmdk'], { cwd: theirs })
    assert.equal(o.stdout, q.stdout)
    assertSameFiles(ours, theirs, 'create -b')
    const commands = ['-c', 'write -P 0x32 4k 8k', '-c', 'write -z 512k 64k']
    const a = await qimg(['io', '-f', 'vmdk', ...commands, 'top.vmdk'], { cwd: ours })
    const b = await run('qemu-io', ['-f', 'vmdk', ...commands, 'top.vmdk'], { cwd: theirs })
    assert.equal(filterQemuIo(a.stdout + a.stderr), filterQemuIo(b.stdout + b.stderr))
    assertSameFiles(ours, theirs, 'io over a backing file')
    for (const command of [['info'], ['info', '--output=json'], ['info', '--backing-chain'], ['map', '--output=json']]) {
      const r = await both(theirs, [...command, 'top.vmdk'])
      assert.equal(r.ours, r.theirs, command.join(' '))
    }
    await sameRaw(theirs, 'top.vmdk')
  })
})
