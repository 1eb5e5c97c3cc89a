// Oracle: VDI against qemu-img/qemu-io 7.2. Images QEMU made read bit-exact by qimg (convert to
// raw, map and info as JSON alike); images qimg made and wrote (a seeded script of write,
// write -z and discard) are the bytes qemu-io makes from the same script, compare equal to a raw
// image written alike and pass qemu-img check; convert -O vdi from qcow2 and back; create,
// hostile headers, check verdicts on corrupted block maps, resize, and snapshot/amend/measure
// refusals, message for message.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { needTools, run, runOk, sharedWorkDir, qimgInProcess as qimg } from '../helpers/oracle.js'
import { ioScript } from '../helpers/io-script.js'

const MiB = 1024 * 1024
const work = sharedWorkDir('qimg-oracle-vdi-', async () => {}, ['qemu-img', 'qemu-io'])

/** qimg's and qemu-img's output for the same arguments, with qemu-img named qimg. */
async function both(args: string[]): Promise<{ ours: { code: number; out: string }; theirs: { code: number; out: string } }> {
  const [o, t] = await Promise.all([
    run(process.execPath, [work.linked('qemu-img'), ...args], { cwd: work.dir }),
    run('qemu-img', args, { cwd: work.dir }),
  ])
  return { ours: { code: o.code, out: o.stdout + o.stderr }, theirs: { code: t.code, out: t.stdout + t.stderr } }
}

async function qemuIo(file: string, commands: string[], format = 'vdi'): Promise<void> {
  await runOk('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), file])
}

/** The last 64 bytes of UUIDs (uuid_image, uuid_last_snap) blanked: random in both tools. */
function withoutUuids(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice()
  copy.fill(0, 0x188, 0x1a8)
  return copy
}

const SIZES = [1 * MiB, 5.5 * MiB, 64 * MiB]

describe('vdi images qemu-img made, read by qimg', () => {
  for (const isStatic of [false, true]) {
    for (const size of SIZES) {
      it(`${isStatic ? 'static' : 'dynamic'} ${size / MiB} MiB`, async (t) => {
        if (!needTools(t, 'qemu-img', 'qemu-io')) return
        assert.ok(work.ready())
        const img = work.at(`q-${isStatic}-${size}.vdi`)
        await runOk('qemu-img', ['create', '-q', '-f', 'vdi', '-o', `static=${isStatic ? 'on' : 'off'}`, img, String(size)])
        const writes = [`write -P 0x11 0 4k`, `write -P 0x22 ${size - 512} 512`, `write -z ${Math.floor(size / 2 / 512) * 512} 64k`]
        if (size > MiB) writes.push(`write -P 0x33 ${MiB - 1024} 3k`, `write -P 0x44 ${size - MiB - 4096} 1M`)
        await qemuIo(img, writes)
        const ours = work.at(`q-${isStatic}-${size}.o.raw`)
        const theirs = work.at(`q-${isStatic}-${size}.t.raw`)
        assert.equal((await qimg(['convert', '-O', 'raw', img, ours])).code, 0)
        await runOk('qemu-img', ['convert', '-O', 'raw', img, theirs])
        assert.ok(Buffer.compare(readFileSync(ours), readFileSync(theirs)) === 0, 'raw contents differ')
        for (const command of [['map', '--output=json'], ['info', '--output=json'], ['map'], ['info'], ['check'], ['check', '--output=json']]) {
          const { ours: o, theirs: q } = await both([...command, img])
          assert.deepEqual(o, q, command.join(' '))
        }
      })
    }
  }
})

describe('vdi create', () => {
  for (const args of [['-o', 'static=off'], ['-o', 'static=on'], []]) {
    for (const size of ['0', '1M', '5767168', '1000', '64M', '1G']) {
      it(`create ${args.join(' ')} ${size}`, async (t) => {
        if (!needTools(t, 'qemu-img')) return
        const name = `c${args.join('')}-${size}`
        const ours = await run(process.execPath, [work.linked('qemu-img'), 'create', '-f', 'vdi', ...args, `${name}.o.vdi`, size], { cwd: work.dir })
        const theirs = await run('qemu-img', ['create', '-f', 'vdi', ...args, `${name}.t.vdi`, size], { cwd: work.dir })
        assert.deepEqual({ ...ours, stdout: ours.stdout.replace('.o.vdi', '.t.vdi') }, theirs)
        const a = readFileSync(work.at(`${name}.o.vdi`))
        const b = readFileSync(work.at(`${name}.t.vdi`))
        assert.equal(a.length, b.length)
        assert.ok(Buffer.compare(withoutUuids(a), withoutUuids(b)) === 0, 'headers differ beyond the UUIDs')
      })
    }
  }
  it('-o help and a size above the maximum', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    for (const args of [['create', '-f', 'vdi', '-o', 'help'], ['create', '-f', 'vdi', 'big.vdi', '4294967295M'], ['create', '-f', 'vdi', '-o', 'static=maybe', 'x.vdi', '1M']]) {
      const { ours, theirs } = await both(args)
      assert.deepEqual(ours, theirs, args.join(' '))
    }
  })
})


describe('vdi images qimg made and wrote', () => {
  for (const [seed, isStatic] of [[1, false], [2, false], [3, true], [4, false]] as const) {
    it(`seed ${seed}${isStatic ? ' static' : ''}`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const size = 5.5 * MiB + (seed === 4 ? 7 * 512 : 0)
      const ours = work.at(`w${seed}.o.vdi`)
      const theirs = work.at(`w${seed}.t.vdi`)
      const raw = work.at(`w${seed}.raw`)
      assert.equal((await qimg(['create', '-q', '-f', 'vdi', '-o', `static=${isStatic ? 'on' : 'off'}`, ours, String(size)])).code, 0)
      copyFileSync(ours, theirs)
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', raw, String(size)])
      const commands = ioScript(seed, size, 40)
      const r = await qimg(['io', '-f', 'vdi', ...commands.flatMap((c) => ['-c', c]), ours])
      assert.equal(r.code, 0, r.stderr)
      await qemuIo(theirs, commands)
      // VDI has no discard (QEMU's succeeds doing nothing); on raw it would punch holes.
      await qemuIo(raw, commands.filter((c) => !c.startsWith('discard')), 'raw')
      assert.ok(Buffer.compare(readFileSync(ours), readFileSync(theirs)) === 0, 'qimg and qemu-io wrote different bytes')
      assert.equal(await runOk('qemu-img', ['compare', '-f', 'vdi', '-F', 'raw', ours, raw]), 'Images are identical.\n')
      assert.equal(await runOk('qemu-img', ['check', ours]), 'No errors were found on the image.\n')
    })
  }
})

describe('vdi convert', () => {
  it('qcow2 to vdi and back', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const src = work.at('conv.qcow2')
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', src, '7M'])
    await qemuIo(src, ['write -P 0x5a 0 64k', 'write -P 0x6b 3M 1M', 'write -z 4M 512k', 'write -P 0x7c 7167k 1k'], 'qcow2')
    for (const extra of [[], ['-o', 'static=on']]) {
      const tag = extra.length ? 's' : 'd'
      const ours = work.at(`conv-${tag}.o.vdi`)
      const theirs = work.at(`conv-${tag}.t.vdi`)
      assert.equal((await qimg(['convert', '-O', 'vdi', ...extra, src, ours])).code, 0)
      await runOk('qemu-img', ['convert', '-O', 'vdi', ...extra, src, theirs])
      assert.ok(Buffer.compare(withoutUuids(readFileSync(ours)), withoutUuids(readFileSync(theirs))) === 0, 'convert -O vdi differs from qemu-img beyond the UUIDs')
      assert.equal(await runOk('qemu-img', ['compare', src, ours]), 'Images are identical.\n')
      const back = work.at(`conv-${tag}.back.qcow2`)
      assert.equal((await qimg(['convert', '-O', 'qcow2', ours, back])).code, 0)
      assert.equal(await runOk('qemu-img', ['compare', src, back]), 'Images are identical.\n')
      const { ours: o, theirs: q } = await both(['map', '--output=json', ours])
      assert.deepEqual(o, q)
    }
  })
})

/** A 4 MiB dynamic image made by qemu-img with blocks 0 and 2 written (host blocks 0 and 1). */
async function baseImage(name: string): Promise<string> {
  const path = work.at(name)
  await runOk('qemu-img', ['create', '-q', '-f', 'vdi', path, '4M'])
  await qemuIo(path, ['write -P 1 0 512', 'write -P 2 2M 512'])
  return path
}

function patch(path: string, offset: number, width: 4 | 8, value: number | bigint): void {
  const bytes = readFileSync(path)
  if (width === 4) bytes.writeUInt32LE(Number(value), offset)
  else bytes.writeBigUInt64LE(BigInt(value), offset)
  writeFileSync(path, bytes)
}

describe('vdi hostile headers and check verdicts', () => {
  const headerCases: [string, number, 4 | 8, number | bigint][] = [
    ['size-max', 0x170, 8, 0x1fffff80 * MiB + 512],
    ['signature', 0x40, 4, 0x12345678],
    ['version', 0x44, 4, 0x00020001],
    ['bmap-align', 0x154, 4, 0x201],
    ['data-align', 0x158, 4, 0x401],
    ['sector-size', 0x168, 4, 4096],
    ['block-size', 0x178, 4, 2 * MiB],
    ['disk-size', 0x170, 8, 5 * MiB],
    ['link', 0x1a8, 4, 1],
    ['parent', 0x1b8, 4, 1],
    ['blocks', 0x180, 4, 0x40000000],
  ]
  for (const [name, offset, width, value] of headerCases) {
    it(`header: ${name}`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const path = await baseImage(`h-${name}.vdi`)
      patch(path, offset, width, value)
      for (const command of [['info', '-f', 'vdi'], ['check', '-f', 'vdi']]) {
        const { ours, theirs } = await both([...command, path])
        assert.deepEqual(ours, theirs, command.join(' '))
      }
    })
  }
  const bmapCases: [string, (path: string) => void][] = [
    ['entry too large', (p) => patch(p, 0x204, 4, 9)],
    ['shared host block', (p) => patch(p, 0x20c, 4, 1)],
    ['count too high', (p) => patch(p, 0x184, 4, 3)],
    ['discarded entry', (p) => { patch(p, 0x208, 4, 0xfffffffe); patch(p, 0x184, 4, 1) }],
  ]
  for (const [name, corrupt] of bmapCases) {
    it(`check: ${name}`, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const path = await baseImage(`b-${name.replaceAll(' ', '-')}.vdi`)
      corrupt(path)
      for (const command of [['check'], ['check', '--output=json'], ['check', '-r', 'all'], ['check', '-r', 'leaks']]) {
        const { ours, theirs } = await both([...command, path])
        assert.deepEqual(ours, theirs, command.join(' '))
      }
    })
  }
  it('resize is refused as qemu-img does', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const path = await baseImage('resize.vdi')
    for (const args of [['resize', path, '8M'], ['resize', path, '2M'], ['resize', '--shrink', path, '2M'], ['resize', '--preallocation=full', path, '+1M']]) {
      const { ours, theirs } = await both(args)
      assert.deepEqual(ours, theirs, args.join(' '))
    }
  })
  it('snapshot, amend and measure: what QEMU does for a format without them', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const path = await baseImage('caps.vdi')
    const before = readFileSync(path)
    const cases = [
      ['snapshot', '-l', path], ['snapshot', '-c', 's1', path], ['snapshot', '-a', 's1', path], ['snapshot', '-d', 's1', path],
      ['amend', '-o', 'size=8M', path], ['amend', '-f', 'vdi', '-o', 'cluster_size=4k', path], ['amend', '-o', 'no_such_option=1', path],
      ['amend', '-o', 'help', path], ['amend', '-f', 'raw', '-o', 'size=8M', path],
      ['measure', '-O', 'vdi', path], ['measure', '-O', 'vdi', '--size', '8M'], ['measure', '-O', 'vdi', '-o', 'static=on', '--size', '8M'],
      ['measure', '-O', 'vdi', '-o', 'cluster_size=4k', '--size', '8M'], ['measure', '-O', 'vdi', '-o', 'static=maybe', '--size', '8M'],
      ['measure', '-O', 'qcow2', path], ['measure', '--output=json', path],
    ]
    for (const args of cases) {
      const { ours, theirs } = await both(args)
      assert.deepEqual(ours, theirs, args.join(' '))
    }
    assert.ok(Buffer.compare(readFileSync(path), before) === 0, 'a refused command changed the image')
  })
})
