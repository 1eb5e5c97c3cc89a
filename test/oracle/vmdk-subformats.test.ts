// Oracle: the VMDK subformats qemu-img 7.2 reads but cannot create (vmfsSparse COWD extents,
// seSparse, vmfs flat extents), built from QEMU's layouts (test/vmdk/build-extents.ts): qimg and
// qemu-img convert them to the same raw bytes and answer info, map and check alike; the same
// qemu-io script writes the same COWD extent; hostile seSparse and COWD headers are refused by
// both, with QEMU's text.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { isImageError } from '../../src/errors.js'
import { buildCowd, buildSeSparse, extentDescriptor, type GrainSpec } from '../vmdk/build-extents.js'
import { MemoryFiles, openVmdk, pokeLE } from '../vmdk/vmdk-helpers.js'
import { needTools, qimg, run, runOk, tempDir } from '../helpers/oracle.js'

const fill = (length: number, value: number) => new Uint8Array(length).fill(value)
const patterned = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff)

/** The fixtures: descriptor name → files (name → bytes). */
function fixtures(): Map<string, Map<string, Uint8Array>> {
  const out = new Map<string, Map<string, Uint8Array>>()
  const cowd = buildCowd({ capacitySectors: 2 * 4096 * 2, granularity: 2, grains: new Map([[0, patterned(1024, 1)], [7, fill(1024, 2)], [4096, patterned(1024, 3)], [8191, patterned(1024, 4)]]) })
  out.set('vmfs-sparse.vmdk', new Map([['vmfs-sparse.vmdk', extentDescriptor('vmfsSparse', ['RW 16384 VMFSSPARSE "vmfs-sparse-delta.vmdk"'])], ['vmfs-sparse-delta.vmdk', cowd.bytes]]))
  const grains = new Map<number, GrainSpec>([[0, patterned(4096, 5)], [1, 'zero'], [2, 'unmapped'], [4095, fill(4096, 6)], [4096, patterned(4096, 7)], [9000, 'zero'], [12000, patterned(4096, 8)]])
  const se = buildSeSparse({ capacitySectors: 100000, grains })
  out.set('se-sparse.vmdk', new Map([['se-sparse.vmdk', extentDescriptor('seSparse', ['RW 100000 SESPARSE "se-sparse-sesparse.vmdk"'])], ['se-sparse-sesparse.vmdk', se.bytes]]))
  // Two extents of different kinds in one disk: a flat VMFS extent, then a COWD one.
  const second = buildCowd({ capacitySectors: 4096, granularity: 8, grains: new Map([[3, patterned(4096, 9)]]) })
  out.set('vmfs.vmdk', new Map([
    ['vmfs.vmdk', extentDescriptor('vmfs', ['RW 2048 VMFS "vmfs-flat.vmdk"', 'RW 4096 VMFSSPARSE "vmfs-delta.vmdk"'])],
    ['vmfs-flat.vmdk', patterned(1024 * 1024, 10)], ['vmfs-delta.vmdk', second.bytes],
  ]))
  return out
}

function writeAll(dir: string, files: Map<string, Uint8Array>): void {
  for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes)
}

describe('vmdk subformats qemu-img reads, built from its layouts', () => {
  for (const [image, files] of fixtures()) {
    it(image, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const dir = tempDir('qimg-vmdk-sub-')
      try {
        writeAll(dir.path, files)
        for (const command of [['info', '--output=json'], ['map', '--output=json'], ['info'], ['map'], ['check']]) {
          const [o, q] = await Promise.all([qimg([...command, image], { cwd: dir.path }), run('qemu-img', [...command, image], { cwd: dir.path })])
          assert.deepEqual({ code: o.code, out: o.stdout, err: o.stderr }, { code: q.code, out: q.stdout, err: q.stderr }, command.join(' '))
        }
        const o = await qimg(['convert', '-O', 'raw', image, 'ours.raw'], { cwd: dir.path })
        assert.equal(o.code, 0, o.stderr)
        await runOk('qemu-img', ['convert', '-O', 'raw', image, 'theirs.raw'], { cwd: dir.path })
        assert.ok(readFileSync(dir.file('ours.raw')).equals(readFileSync(dir.file('theirs.raw'))), 'raw contents differ')
      } finally {
        dir.cleanup()
      }
    })
  }

  it('the same qemu-io script writes the same COWD extent (vmfsSparse is writable in QEMU)', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const dir = tempDir('qimg-vmdk-sub-')
    try {
      const files = fixtures().get('vmfs.vmdk')!
      const script = ['write -P 0x11 4k 4k', 'write -P 0x22 1020k 8k', 'write -z 1500k 4k', 'write -P 0x33 2M 100k', 'write -P 0x44 0 512']
      for (const side of ['ours', 'theirs']) {
        mkdirSync(dir.file(side))
        writeAll(dir.file(side), files)
      }
      const args = script.flatMap((c) => ['-c', c])
      const o = await qimg(['io', ...args, 'vmfs.vmdk'], { cwd: dir.file('ours') })
      const q = await run('qemu-io', [...args, 'vmfs.vmdk'], { cwd: dir.file('theirs') })
      assert.equal(o.code, q.code, o.stderr)
      for (const name of ['vmfs-flat.vmdk', 'vmfs-delta.vmdk']) {
        assert.ok(readFileSync(join(dir.file('ours'), name)).equals(readFileSync(join(dir.file('theirs'), name))), `${name} differs`)
      }
      copyFileSync(join(dir.file('theirs'), 'vmfs-delta.vmdk'), join(dir.file('ours'), 'vmfs-delta.vmdk'))
      assert.equal((await run('qemu-img', ['compare', join(dir.file('ours'), 'vmfs.vmdk'), join(dir.file('theirs'), 'vmfs.vmdk')])).code, 0)
    } finally {
      dir.cleanup()
    }
  })

  it('hostile seSparse and COWD headers: qemu-img refuses each with the text qimg gives', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const se: [number, bigint][] = [[0, 0xcafebabfn], [8, 0x100000001n], [24, 16n], [32, 2n ** 63n], [40, 1n], [64, 5n], [300, 1n], [80, 2n ** 60n], [80, 2n ** 40n], [512, 0n], [536, 1n], [612, 1n], [136, 0x2000000n]]
    const cowd: [number, number][] = [[16, 0x200001], [24, 32 * 1024 * 1024 + 1]]
    const cases: [string, Uint8Array, string][] = [
      ...se.map(([offset, value]): [string, Uint8Array, string] => {
        const l = buildSeSparse({ capacitySectors: 70000, grains: new Map([[0, fill(4096, 1)]]) })
        pokeLE(l.bytes, offset, value, 8)
        return [`SESPARSE`, l.bytes, 'seSparse']
      }),
      ...cowd.map(([offset, value]): [string, Uint8Array, string] => {
        const l = buildCowd({ capacitySectors: 2048, granularity: 8, grains: new Map([[0, fill(4096, 1)]]) })
        pokeLE(l.bytes, offset, value, 4)
        return ['VMFSSPARSE', l.bytes, 'vmfsSparse']
      }),
    ]
    const dir = tempDir('qimg-vmdk-sub-')
    try {
      for (const [i, [type, bytes, createType]] of cases.entries()) {
        const desc = extentDescriptor(createType, [`RW 2048 ${type} "h${i}-x.vmdk"`])
        writeFileSync(dir.file(`h${i}.vmdk`), desc)
        writeFileSync(dir.file(`h${i}-x.vmdk`), bytes)
        const files = new MemoryFiles()
        files.put(`h${i}.vmdk`, desc)
        files.put(`h${i}-x.vmdk`, bytes)
        const error = await openVmdk(files, `h${i}.vmdk`).then(() => undefined, (e: unknown) => e)
        assert.ok(isImageError(error) && error.qemuText !== undefined, `case ${i}: ${String(error)}`)
        const q = await run('qemu-img', ['info', `h${i}.vmdk`], { cwd: dir.path })
        assert.equal(q.stderr.trim(), `qemu-img: Could not open 'h${i}.vmdk': ${error.qemuText}`, `case ${i}`)
        assert.notEqual((await qimg(['info', `h${i}.vmdk`], { cwd: dir.path })).code, 0)
      }
    } finally {
      dir.cleanup()
    }
  })
})
