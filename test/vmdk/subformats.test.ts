// VMDK subformats qemu-img reads but cannot create — vmfsSparse (COWD extents), seSparse, vmfs
// (VMFS flat extents) — built from QEMU's layouts in memory: content, block status, writes to
// COWD, seSparse refused for writing, vmfsThin refused as QEMU refuses it, and hostile headers
// and tables, each a typed error with QEMU's text and no allocation the file does not back.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { decodeSeSparseEntry } from '../../src/vmdk/sesparse.js'
import { buildCowd, buildSeSparse, COWD_GTES, extentDescriptor, seSparseGrainEntry, type GrainSpec } from './build-extents.js'
import { MemoryFiles, openVmdk, pokeLE } from './vmdk-helpers.js'

const fill = (length: number, value: number) => new Uint8Array(length).fill(value)

async function rejects(promise: Promise<unknown>, code: string, qemuText: string | RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isImageError(e), `not an ImageError: ${String(e)}`)
    assert.equal(e.code, code, e.message)
    if (typeof qemuText === 'string') assert.equal(e.qemuText, qemuText, e.message)
    else assert.match(e.message, qemuText)
    return true
  })
}

function cowdFiles(grains: Map<number, Uint8Array>, capacitySectors = 2048, granularity = 8): { files: MemoryFiles; layout: ReturnType<typeof buildCowd> } {
  const files = new MemoryFiles()
  const layout = buildCowd({ capacitySectors, granularity, grains })
  files.put('c-delta.vmdk', layout.bytes)
  files.put('c.vmdk', extentDescriptor('vmfsSparse', [`RW ${capacitySectors} VMFSSPARSE "c-delta.vmdk"`]))
  return { files, layout }
}

function seFiles(grains: Map<number, GrainSpec>, capacitySectors = 70000): { files: MemoryFiles; layout: ReturnType<typeof buildSeSparse> } {
  const files = new MemoryFiles()
  const layout = buildSeSparse({ capacitySectors, grains })
  files.put('s-sesparse.vmdk', layout.bytes)
  files.put('s.vmdk', extentDescriptor('seSparse', [`RW ${capacitySectors} SESPARSE "s-sesparse.vmdk"`]))
  return { files, layout }
}

describe('vmfsSparse (COWD extents)', () => {
  it('reads grains, holes and block status as QEMU places them', async () => {
    const { files } = cowdFiles(new Map([[0, fill(4096, 1)], [5, fill(4096, 2)], [255, fill(4096, 3)]]))
    const d = await openVmdk(files, 'c.vmdk')
    assert.equal(d.size, 1024 * 1024)
    assert.deepEqual(await d.read(5 * 4096, 4096), fill(4096, 2))
    assert.deepEqual(await d.read(4096, 4096), fill(4096, 0))
    assert.deepEqual(await d.read(1024 * 1024 - 4096, 4096), fill(4096, 3))
    const st = await d.blockStatus(0, d.size)
    assert.deepEqual([st.length, st.data], [4096, true])
    const info = await d.info()
    assert.equal(info.clusterSize, 4096)
    await d.close()
  })
  it('grain tables hold 4096 entries: a grain in the second table', async () => {
    const { files } = cowdFiles(new Map([[COWD_GTES + 1, fill(512, 9)]]), 2 * COWD_GTES, 1)
    const d = await openVmdk(files, 'c.vmdk')
    assert.deepEqual(await d.read((COWD_GTES + 1) * 512, 512), fill(512, 9))
    await d.close()
  })
  it('takes writes: new grains at the end of the file, as vmdk_pwritev allocates them', async () => {
    const { files, layout } = cowdFiles(new Map([[0, fill(4096, 1)]]))
    const d = await openVmdk(files, 'c.vmdk', { writable: true })
    await d.write(8192, fill(4096, 0x11))
    await d.write(4096 * 100 + 512, fill(512, 0x22))
    await d.close()
    const extent = files.bytes('c-delta.vmdk')
    // next_cluster_sector starts at the file's end rounded up to a grain.
    assert.equal(extent.length, Math.ceil(layout.bytes.length / 4096) * 4096 + 2 * 4096)
    const again = await openVmdk(files, 'c.vmdk')
    assert.deepEqual(await again.read(8192, 4096), fill(4096, 0x11))
    assert.deepEqual(await again.read(4096 * 100, 1024), new Uint8Array([...fill(512, 0), ...fill(512, 0x22)]))
    assert.deepEqual(await again.read(0, 4096), fill(4096, 1))
    await again.close()
  })
  it('a COWD file alone has no descriptor at 0x200: Invalid argument, as QEMU', async () => {
    const { files } = cowdFiles(new Map())
    await rejects(openVmdk(files, 'c-delta.vmdk'), 'CORRUPT', 'Invalid argument')
  })
})

describe('seSparse extents', () => {
  it('decodes grain table entries as get_cluster_offset does', () => {
    assert.deepEqual(decodeSeSparseEntry(0, 0), { kind: 'unallocated' })
    assert.deepEqual(decodeSeSparseEntry(0, 1), { kind: 'invalid' })
    assert.deepEqual(decodeSeSparseEntry(0x10000000, 0), { kind: 'zero' })
    assert.deepEqual(decodeSeSparseEntry(0x20000000, 5), { kind: 'zero' })
    for (const cluster of [0, 1, 0xfff, 0x1000, 0x12345, 2 ** 30 + 7]) {
      const e = seSparseGrainEntry(cluster)
      assert.deepEqual(decodeSeSparseEntry(Number(e >> 32n), Number(e & 0xffffffffn)), { kind: 'data', cluster })
    }
    assert.deepEqual(decodeSeSparseEntry(0x40000000, 0), { kind: 'invalid' })
  })
  it('reads data, zero and unmapped grains, across grain tables', async () => {
    const { files } = seFiles(new Map<number, GrainSpec>([[0, fill(4096, 1)], [3, 'zero'], [4, 'unmapped'], [5000, fill(4096, 5)], [8191, fill(4096, 6)]]))
    const d = await openVmdk(files, 's.vmdk')
    assert.equal(d.size, 70000 * 512)
    assert.deepEqual(await d.read(0, 4096), fill(4096, 1))
    assert.deepEqual(await d.read(5000 * 4096, 4096), fill(4096, 5))
    assert.deepEqual(await d.read(8191 * 4096, 4096), fill(4096, 6))
    assert.deepEqual(await d.read(3 * 4096, 8192), fill(8192, 0))
    const zero = await d.blockStatus(3 * 4096, 4096)
    assert.deepEqual([zero.present, zero.zero, zero.data], [true, true, false])
    const hole = await d.blockStatus(4096, 4096)
    assert.deepEqual([hole.present, hole.data], [false, false])
    await d.close()
  })
  it('opens read-only only, with QEMU\'s message', async () => {
    const { files } = seFiles(new Map())
    await rejects(openVmdk(files, 's.vmdk', { writable: true }), 'READ_ONLY', 'No write support for seSparse images available')
  })
})

describe('vmfs and vmfsThin descriptors', () => {
  it('a VMFS extent is flat from offset 0; vmfsThin is refused as QEMU refuses it', async () => {
    const files = new MemoryFiles()
    files.put('v-flat.vmdk', fill(8192, 7))
    files.put('v.vmdk', extentDescriptor('vmfs', ['RW 16 VMFS "v-flat.vmdk"']))
    const d = await openVmdk(files, 'v.vmdk')
    assert.deepEqual(await d.read(0, 8192), fill(8192, 7))
    await d.close()
    files.put('t.vmdk', extentDescriptor('vmfsThin', ['RW 16 VMFS "v-flat.vmdk"']))
    await rejects(openVmdk(files, 't.vmdk'), 'UNSUPPORTED', "Unsupported image type 'vmfsThin'")
  })
})

describe('hostile vmfsSparse and seSparse extents', () => {
  it('COWD: absurd granularity and directory sizes, tables out of the file', async () => {
    const cases: [number, number, string, string][] = [
      [16, 0x200001, 'CORRUPT', 'Invalid granularity, image may be corrupt'],
      [16, 0, 'CORRUPT', 'Invalid argument'],
      [16, 0x100000, 'CORRUPT', 'Invalid argument'], // 4096 × 2^20 wraps a uint32 to 0
      [24, 32 * 1024 * 1024 + 1, 'CORRUPT', 'L1 size too big'],
      [24, 32 * 1024 * 1024, 'CORRUPT', "Could not read l1 table from extent 'c-delta.vmdk': Invalid argument"],
      [20, 0xffffffff, 'CORRUPT', "Could not read l1 table from extent 'c-delta.vmdk': Invalid argument"],
    ]
    for (const [offset, value, code, text] of cases) {
      const { files } = cowdFiles(new Map([[0, fill(4096, 1)]]))
      pokeLE(files.bytes('c-delta.vmdk'), offset, value, 4)
      await rejects(openVmdk(files, 'c.vmdk'), code, text)
    }
    const { files, layout } = cowdFiles(new Map([[0, fill(4096, 1)]]))
    pokeLE(files.bytes('c-delta.vmdk'), layout.directoryAt, 0x7fffffff, 4)
    const d = await openVmdk(files, 'c.vmdk')
    await rejects(d.read(0, 4096), 'CORRUPT', /grain table at 0xfffffffe00 .* outside the file/)
    await d.close()
  })
  it('a COWD capacity beyond its directory: the read past it is refused, not zero-filled', async () => {
    const { files } = cowdFiles(new Map([[0, fill(4096, 1)]]))
    pokeLE(files.bytes('c-delta.vmdk'), 12, 0xffffffff, 4) // disk_sectors
    files.put('c.vmdk', extentDescriptor('vmfsSparse', ['RW 2048 VMFSSPARSE "c-delta.vmdk"']))
    const d = await openVmdk(files, 'c.vmdk')
    assert.equal(d.size, 0xffffffff * 512)
    await rejects(d.read(d.size - 512, 512), 'CORRUPT', /beyond the grain directory's 1 entries/)
    await d.close()
  })
  it('seSparse: every const and volatile header check, with QEMU\'s texts', async () => {
    const cases: [number, bigint, string, string][] = [
      [0, 0xcafebabfn, 'CORRUPT', 'Bad const header magic: 0x00000000cafebabf'],
      [8, 0x100000001n, 'UNSUPPORTED', 'Unsupported version: 0x0000000100000001'],
      [24, 16n, 'UNSUPPORTED', 'Unsupported grain size: 16'],
      [32, 2n ** 63n, 'UNSUPPORTED', 'Unsupported grain table size: 9223372036854775808'],
      [40, 1n, 'UNSUPPORTED', 'Unsupported flags: 0x0000000000000001'],
      [64, 5n, 'UNSUPPORTED', 'Unsupported reserved bits: 0x0000000000000000 0x0000000000000000 0x0000000000000005 0x0000000000000000'],
      [300, 1n, 'UNSUPPORTED', 'Unsupported non-zero const header padding'],
      [80, 2n ** 60n, 'CORRUPT', 'Bad volatile header magic: 0x00000000cafebabe'], // × 512 wraps to 0: the const header
      [80, 2n ** 40n, 'CORRUPT', 'Bad volatile header magic: 0x0000000000000000'], // past the end: zeros
      [512, 0n, 'CORRUPT', 'Bad volatile header magic: 0x0000000000000000'],
      [512 + 24, 1n, 'UNSUPPORTED', 'Image is dirty, Replaying journal not supported'],
      [512 + 100, 1n, 'UNSUPPORTED', 'Unsupported non-zero volatile header padding'],
      [136, 0x2000000n, 'CORRUPT', 'L1 size too big'],
      [136, 2n ** 58n, 'CORRUPT', ''], // × 64 wraps to 0 entries: see below
      [128, 2n ** 40n, 'CORRUPT', "Could not read l1 table from extent 's-sesparse.vmdk': Invalid argument"],
      [16, 2n ** 62n, 'CORRUPT', 'Invalid argument'],
    ]
    for (const [offset, value, code, text] of cases) {
      const { files } = seFiles(new Map([[0, fill(4096, 1)]]))
      pokeLE(files.bytes('s-sesparse.vmdk'), offset, value, 8)
      if (offset === 136 && value === 2n ** 58n) {
        // No directory entries at all: the open succeeds, and every read is past the directory.
        const d = await openVmdk(files, 's.vmdk')
        await rejects(d.read(0, 512), 'CORRUPT', /beyond the grain directory's 0 entries/)
        await d.close()
        continue
      }
      await rejects(openVmdk(files, 's.vmdk'), code, text)
    }
  })
  it('seSparse: bad directory and table entries, tables and grains out of range', async () => {
    const entry = async (poke: (bytes: Uint8Array, layout: ReturnType<typeof buildSeSparse>) => void, pattern: RegExp) => {
      const { files, layout } = seFiles(new Map([[0, fill(4096, 1)]]))
      poke(files.bytes('s-sesparse.vmdk'), layout)
      const d = await openVmdk(files, 's.vmdk')
      await rejects(d.read(0, 4096), 'CORRUPT', pattern)
      await d.close()
    }
    await entry((b, l) => pokeLE(b, l.directoryAt, 0x2000000000000000n, 8), /grain directory entry 0 is 0x2000000000000000/)
    await entry((b, l) => pokeLE(b, l.directoryAt, 0x10000000ffffffffn, 8), /lies beyond sector 2\^32/)
    await entry((b, l) => pokeLE(b, l.directoryAt, 0x1000000000001000n, 8), /grain table at .* is outside the file/)
    await entry((b, l) => pokeLE(b, l.tablesAt, 0x4000000000000000n, 8), /entry 0 is 0x4000000000000000, not a grain table entry/)
    await entry((b, l) => pokeLE(b, l.tablesAt, 7n, 8), /entry 0 is 0x0000000000000007/)
    await entry((b, l) => pokeLE(b, l.tablesAt, 0x3000ffffffffffffn, 8), /beyond what qimg addresses/)
  })
})
