// VMDK in memory: the descriptor parser's QEMU rules, create/open/write/read for every
// subformat, the CID rewrite, zeroed grains, streamOptimized restrictions, and hostile images
// (absurd extents and paths, tables outside the file, huge grain counts): a typed error each.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { descriptorBytes, parseDescriptor, parseExtentLines, readCid, withCid } from '../../src/vmdk/descriptor.js'
import { probeVmdk } from '../../src/vmdk/module.js'
import { createVmdk, MemoryFiles, openVmdk, pokeLE } from './vmdk-helpers.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

function fill(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value)
}

async function rejects(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isImageError(e), `not an ImageError: ${String(e)}`)
    assert.equal(e.code, code, e.message)
    assert.match(e.message, pattern)
    return true
  })
}

describe('vmdk descriptor (vmdk_parse_extents rules)', () => {
  it('takes RW lines of the types QEMU opens and skips the rest', () => {
    const desc = [
      '# Disk DescriptorFile', 'version=1', 'CID=12ab', 'parentCID=ffffffff', 'createType="monolithicFlat"',
      'RW 2048 FLAT "a.img" 0', 'RDONLY 100 FLAT "ro.img" 0', 'NOACCESS 100 FLAT "na.img" 0', 'RW 100 ZERO "z"',
      'RW 0 FLAT "empty.img" 0', 'RW 4096 SPARSE "s.vmdk"', 'RW 8 VMFS "v.img"', 'ddb.adapterType = "ide"', '',
    ].join('\n')
    const d = parseDescriptor(desc, 'x.vmdk')
    assert.equal(d.createType, 'monolithicFlat')
    assert.deepEqual(d.extents.map((e) => [e.type, e.sectors, e.fileName, e.flatOffsetSectors]), [
      ['FLAT', 2048, 'a.img', 0], ['SPARSE', 4096, 's.vmdk', -1], ['VMFS', 8, 'v.img', 0],
    ])
    assert.equal(readCid(desc, false), 0x12ab)
    assert.equal(readCid(desc, true), 0xffffffff)
  })
  it('refuses a FLAT line without an offset and a SPARSE line with one, as QEMU', () => {
    for (const line of ['RW 10 FLAT "a.img"', 'RW 10 FLAT "a.img" -1', 'RW 10 SPARSE "a.vmdk" 5', 'RW 10 VMFS "a.img" 3']) {
      assert.throws(() => parseExtentLines(`${line}\n`, 'x.vmdk'), (e: unknown) => isImageError(e, 'CORRUPT') && e.qemuText === `Invalid extent line: ${line}`)
    }
  })
  it('refuses create types QEMU does not open from a descriptor, and a missing one', () => {
    assert.throws(() => parseDescriptor('createType="monolithicSparse"\n', 'x'), (e: unknown) => isImageError(e, 'UNSUPPORTED') && e.qemuText === "Unsupported image type 'monolithicSparse'")
    assert.throws(() => parseDescriptor('version=1\n', 'x'), (e: unknown) => isImageError(e, 'CORRUPT') && e.qemuText === 'invalid VMDK image descriptor')
  })
  it('bounds sizes and the number of extents', () => {
    assert.throws(() => parseExtentLines('RW 99999999999999999999999 FLAT "a" 0\n', 'x'), (e: unknown) => isImageError(e, 'CORRUPT'))
    assert.throws(() => parseExtentLines('RW 1 FLAT "a" 99999999999999999\n', 'x'), (e: unknown) => isImageError(e, 'CORRUPT'))
    assert.throws(() => parseExtentLines('RW 1 FLAT "a" 0\n'.repeat(40000), 'x'), (e: unknown) => isImageError(e, 'UNSUPPORTED'))
  })
  it('rewrites the CID as vmdk_write_cid does', () => {
    const stored = new Uint8Array(64)
    stored.set(descriptorBytes('version=1\nCID=1\nparentCID=ffffffff\nx=1\n'))
    const out = withCid(stored, 0xdeadbeef, 'x')
    assert.equal(out.length, 64)
    assert.equal(new TextDecoder().decode(out.subarray(0, out.indexOf(0))), 'version=1\nCID=deadbeef\nparentCID=ffffffff\nx=1\n')
  })
  it('probes sparse magics and descriptors as vmdk_probe', () => {
    const text = (s: string) => new TextEncoder().encode(s)
    assert.equal(probeVmdk(text('KDMV')), 100)
    assert.equal(probeVmdk(text('# comment\n   \nversion=1\nCID=1\n')), 100)
    assert.equal(probeVmdk(text('version=4\n')), 0)
    assert.equal(probeVmdk(text('x\nversion=1\n')), 0)
  })
})

describe('vmdk create, write and read in memory', () => {
  for (const subformat of ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
    it(`${subformat}: writes read back, across extents, CID changes once`, async () => {
      const files = new MemoryFiles()
      const size = 2 * GiB + 3 * MiB
      await createVmdk(files, 'dir/d.vmdk', size, { subformat })
      const expected = subformat.startsWith('twoGb') ? ['dir/d.vmdk', `dir/d-${subformat.endsWith('Flat') ? 'f' : 's'}001.vmdk`, `dir/d-${subformat.endsWith('Flat') ? 'f' : 's'}002.vmdk`]
        : subformat === 'monolithicFlat' ? ['dir/d.vmdk', 'dir/d-flat.vmdk'] : ['dir/d.vmdk']
      assert.deepEqual([...files.files.keys()].sort(), expected.sort())
      const device = await openVmdk(files, 'dir/d.vmdk', { writable: true })
      assert.equal(device.size, size)
      const cidBefore = (await device.info()).formatSpecific
      await device.write(2 * GiB - 4096, fill(8192, 0x5a))
      await device.write(100, fill(10, 0x11))
      await device.writeZeroes(2 * GiB, 1024)
      await device.flush()
      await device.close()
      const again = await openVmdk(files, 'dir/d.vmdk')
      assert.deepEqual(await again.read(2 * GiB - 4096, 4096), fill(4096, 0x5a))
      assert.deepEqual(await again.read(2 * GiB, 4096), Uint8Array.from([...new Uint8Array(1024), ...fill(3072, 0x5a)]))
      assert.deepEqual(await again.read(96, 20), Uint8Array.from([0, 0, 0, 0, ...fill(10, 0x11), 0, 0, 0, 0, 0, 0]))
      assert.notDeepEqual((await again.info()).formatSpecific, cidBefore)
      await again.close()
    })
  }
  it('zeroed_grain: whole grains become zeroed GTEs, partial ones are written', async () => {
    const files = new MemoryFiles()
    await createVmdk(files, 'z.vmdk', 4 * MiB, { zeroed_grain: 'on' })
    const device = await openVmdk(files, 'z.vmdk', { writable: true })
    await device.write(0, fill(MiB, 0x77))
    const before = files.bytes('z.vmdk').length
    await device.writeZeroes(65536, 131072)
    assert.equal(files.bytes('z.vmdk').length, before, 'whole zeroed grains allocate nothing')
    const status = await device.blockStatus(65536, 131072)
    assert.equal(status.zero, true)
    assert.deepEqual(await device.read(60000, 140000), Uint8Array.from([...fill(5536, 0x77), ...new Uint8Array(131072), ...fill(3392, 0x77)]))
    await device.close()
  })
  it('streamOptimized: whole grains once, compressed; a rewrite and a partial grain refused as QEMU', async () => {
    const files = new MemoryFiles()
    await createVmdk(files, 's.vmdk', MiB + 4096, { subformat: 'streamOptimized' })
    const device = await openVmdk(files, 's.vmdk', { writable: true })
    const grain = new Uint8Array(65536).map((_, i) => i % 251)
    await device.write(0, grain)
    await device.writeCompressed(MiB, fill(4096, 3))
    await rejects(device.write(0, grain), 'IO', /Could not write to allocated cluster for streamOptimized/)
    await rejects(device.write(128 * 1024, fill(512, 1)), 'INVALID_ARGUMENT', /only whole grains/)
    assert.deepEqual(await device.read(0, 65536), grain)
    assert.deepEqual(await device.read(MiB, 4096), fill(4096, 3))
    assert.equal((await device.blockStatus(0, 65536)).data, true)
    await device.close()
  })
  it('a delta image reads its parent where it has no grain and copies it on write', async () => {
    const files = new MemoryFiles()
    await createVmdk(files, 'base.vmdk', 2 * MiB)
    const base = await openVmdk(files, 'base.vmdk', { writable: true })
    await base.write(0, fill(MiB, 0x42))
    await base.close()
    await createVmdk(files, 'top.vmdk', 2 * MiB, { backing_file: 'base.vmdk' })
    const top = await openVmdk(files, 'top.vmdk', { writable: true })
    assert.equal(top.driver.backing?.name, 'base.vmdk')
    await top.write(1000, fill(10, 0x43))
    assert.deepEqual(await top.read(990, 30), Uint8Array.from([...fill(10, 0x42), ...fill(10, 0x43), ...fill(10, 0x42)]))
    await top.close()
  })
  it('refuses the options QEMU refuses, with its messages', async () => {
    const files = new MemoryFiles()
    await rejects(createVmdk(files, 'a.vmdk', MiB, { subformat: 'vmfs' }), 'INVALID_ARGUMENT', /invalid parameter value: vmfs/)
    await rejects(createVmdk(files, 'a.vmdk', MiB, { adapter_type: 'scsi' }), 'INVALID_ARGUMENT', /invalid parameter value: scsi/)
    await rejects(createVmdk(files, 'a.vmdk', MiB, { compat6: 'on', hwversion: '7' }), 'INVALID_ARGUMENT', /compat6 cannot be enabled with hwversion set/)
    await rejects(createVmdk(files, 'a.vmdk', MiB, { subformat: 'monolithicFlat', zeroed_grain: 'on' }), 'UNSUPPORTED', /Flat image can't enable zeroed grain/)
    await rejects(createVmdk(files, 'a.vmdk', MiB, { backing_fmt: 'qcow2', backing_file: 'b' }), 'INVALID_ARGUMENT', /backing_file must be a vmdk image/)
  })
})

describe('hostile vmdk images', () => {
  async function sparse(size = 4 * MiB): Promise<MemoryFiles> {
    const files = new MemoryFiles()
    await createVmdk(files, 'h.vmdk', size)
    const device = await openVmdk(files, 'h.vmdk', { writable: true })
    await device.write(0, fill(4096, 1))
    await device.close()
    return files
  }
  function edit(files: MemoryFiles, change: (bytes: Uint8Array) => void): void {
    const bytes = files.bytes('h.vmdk').slice()
    change(bytes)
    files.put('h.vmdk', bytes)
  }
  it('a grain directory outside the file', async () => {
    const files = await sparse()
    edit(files, (b) => pokeLE(b, 56, 1_000_000, 8))
    await rejects(openVmdk(files, 'h.vmdk'), 'CORRUPT', /grain directory at sector 1000000 .* is outside the file/)
  })
  it('a grain table outside the file', async () => {
    const files = await sparse()
    const gdSector = Number(new DataView(files.bytes('h.vmdk').buffer).getBigUint64(56, true))
    edit(files, (b) => pokeLE(b, gdSector * 512, 0x7fffffff, 4))
    const device = await openVmdk(files, 'h.vmdk')
    await rejects(device.read(0, 512), 'CORRUPT', /grain table at 0xfffffffe00 .* is outside the file/)
    await device.close()
  })
  it('huge capacities and grain counts: refused before any allocation', async () => {
    const cases: [number, number | bigint, 4 | 8, string, RegExp][] = [
      [12, 2n ** 42n, 8, 'CORRUPT', /67108864 grain directory entries/],
      [12, 2n ** 62n, 8, 'CORRUPT', /beyond what qimg addresses/],
      [12, 2n ** 38n, 8, 'CORRUPT', /grain directory at sector .* is outside the file/],
      [20, 0n, 8, 'CORRUPT', /covers no sectors/],
      [20, 0x400000n, 8, 'CORRUPT', /grains of 4194304 sectors/],
      [44, 100000, 4, 'UNSUPPORTED', /entries per grain table/],
      [4, 4, 4, 'UNSUPPORTED', /version 4/],
      [64, 2n ** 40n, 8, 'CORRUPT', /grains start at sector/],
    ]
    for (const [offset, value, width, code, pattern] of cases) {
      const files = await sparse()
      edit(files, (b) => pokeLE(b, offset, value, width))
      await rejects(openVmdk(files, 'h.vmdk'), code, pattern)
    }
  })
  it('a stream footer that is not one', async () => {
    const files = new MemoryFiles()
    await createVmdk(files, 'h.vmdk', MiB, { subformat: 'streamOptimized' })
    edit(files, (b) => pokeLE(b, 56, 2n ** 64n - 1n, 8))
    await rejects(openVmdk(files, 'h.vmdk'), 'CORRUPT', /stream footer/)
  })
  it('a compressed grain whose size runs past the file', async () => {
    const files = new MemoryFiles()
    await createVmdk(files, 'h.vmdk', MiB, { subformat: 'streamOptimized' })
    const device = await openVmdk(files, 'h.vmdk', { writable: true })
    await device.write(0, fill(65536, 9))
    await device.close()
    const grainAt = 128 * 512 // the first grain after the metadata (grain_offset 128)
    edit(files, (b) => pokeLE(b, grainAt + 8, 0x7fffffff, 4))
    const again = await openVmdk(files, 'h.vmdk')
    await rejects(again.read(0, 512), 'CORRUPT', /compressed grain at 0x10000/)
    await again.close()
  })
  it('extent paths: protocols refused, the untrusted policy refuses every extent', async () => {
    const files = new MemoryFiles()
    const desc = (line: string) => descriptorBytes(`# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n${line}\n`)
    files.put('p.vmdk', desc('RW 8 FLAT "nbd:localhost:10809" 0'))
    await rejects(openVmdk(files, 'p.vmdk'), 'DENIED', /protocol/)
    files.put('q.vmdk', desc('RW 8 FLAT "q-flat.img" 0'))
    files.put('q-flat.img', new Uint8Array(4096))
    await rejects(openVmdk(files, 'q.vmdk', { fileReferences: 'deny' }), 'DENIED', /extent file 'q-flat.img'/)
    const ok = await openVmdk(files, 'q.vmdk')
    assert.equal(ok.size, 4096)
    await ok.close()
    files.put('r.vmdk', desc('RW 16 FLAT "q-flat.img" 0'))
    await rejects(openVmdk(files, 'r.vmdk'), 'CORRUPT', /runs past the end of the file/)
    files.put('m.vmdk', desc('RW 8 FLAT "missing.img" 0'))
    await rejects(openVmdk(files, 'm.vmdk'), 'IO', /Could not open extent file/)
  })
  it('a descriptor without CID, and a tiny file', async () => {
    const files = new MemoryFiles()
    files.put('q-flat.img', new Uint8Array(4096))
    files.put('n.vmdk', descriptorBytes('version=1\ncreateType="monolithicFlat"\nRW 8 FLAT "q-flat.img" 0\n'))
    await rejects(openVmdk(files, 'n.vmdk'), 'CORRUPT', /has no CID/)
    files.put('t.vmdk', new Uint8Array(3))
    await rejects(openVmdk(files, 't.vmdk'), 'NOT_AN_IMAGE', /too small/)
  })
})
