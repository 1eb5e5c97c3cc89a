// Unit tests of the vpc (VHD) module: geometry and size rounding as QEMU computes them, the
// bytes create writes, reads and writes of dynamic and fixed disks, differencing disks built
// from the specification (parent where a bitmap bit is clear), the order of allocation writes,
// and hostile images refused with a typed error before any allocation the file cannot back.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { calculateGeometry, roundedImageSize, VHD_MAX_GEOMETRY } from '../../src/vpc/geometry.js'
import { decodeFooter, vpcChecksum, FOOTER_FIELD } from '../../src/vpc/footer.js'
import { decodeDynamicHeader, DYNAMIC_FIELD } from '../../src/vpc/dynamic-header.js'
import { vpcModule } from '../../src/vpc/module.js'
import { memoryHost } from '../helpers/memory-host.js'
import { mulberry32 } from '../helpers/prng.js'
import { buildDifferencing, expectedDifferencing, newVpc, openVpc, pokeBE, resumFooter, type DifferencingSpec } from './vpc-helpers.js'

const MiB = 1024 * 1024

async function rejects(promise: Promise<unknown>, code: string, text: RegExp, qemuText?: string): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isImageError(e), `not an ImageError: ${String(e)}`)
    assert.equal(e.code, code, e.message)
    assert.match(e.message, text)
    if (qemuText !== undefined) assert.equal(e.qemuText, qemuText)
    return true
  })
}

describe('vpc geometry', () => {
  // Guest sizes and CHS of images qemu-img 7.2 creates for these requested sizes.
  const made: [number, number, [number, number, number]][] = [
    [1, 34816, [1, 4, 17]], [MiB, 1079296, [31, 4, 17]], [10 * MiB, 10514432, [302, 4, 17]],
    [100 * MiB, 104865792, [1004, 12, 17]], [1024 * MiB, 1073995776, [2081, 16, 63]],
    [40 * 1024 * MiB, 42951106560, [20561, 16, 255]], [127 * 1024 * MiB, 136365219840, [65279, 16, 255]],
    [128 * 1024 * MiB, 137438953472, [65535, 16, 255]], [200 * 1024 * MiB, 214748364800, [65535, 16, 255]],
  ]
  for (const [requested, guest, [c, h, s]] of made) {
    it(`${requested} bytes round to ${guest} (${c}/${h}/${s})`, () => {
      const r = roundedImageSize(Math.ceil(requested / 512) * 512, false)!
      assert.equal(r.totalSectors * 512, guest)
      assert.deepEqual([r.cylinders, r.heads, r.sectorsPerTrack], [c, h, s])
    })
  }
  it('force_size keeps the size and takes the largest geometry; above 2040 GiB is refused', () => {
    const r = roundedImageSize(10 * MiB, true)!
    assert.deepEqual([r.cylinders, r.heads, r.sectorsPerTrack, r.totalSectors], [65535, 16, 255, 20480])
    assert.equal(roundedImageSize(2040 * 1024 * MiB, true)?.totalSectors, 0xff000000)
    assert.equal(roundedImageSize(2040 * 1024 * MiB + 512, true), undefined)
    assert.equal(roundedImageSize(2041 * 1024 * MiB, false), undefined)
  })
  it('calculate_geometry never exceeds the sectors asked for, up to the maximum', () => {
    const rand = mulberry32(7)
    for (let i = 0; i < 2000; i++) {
      const sectors = rand() % (VHD_MAX_GEOMETRY + 1000)
      const g = calculateGeometry(sectors)
      assert.ok(g.cylinders * g.heads * g.sectorsPerTrack <= Math.min(sectors, VHD_MAX_GEOMETRY), `${sectors}`)
      assert.ok(g.heads <= 16 && g.cylinders <= 65535)
    }
  })
})

describe('vpc create', () => {
  it('dynamic: footer, header, BAT, footer copy; checksums valid', async () => {
    const bytes = (await newVpc(10 * MiB)).bytes()
    assert.equal(bytes.length, 1536 + 512 + 512)
    assert.deepEqual(bytes.subarray(0, 512), bytes.subarray(2048, 2560))
    const footer = decodeFooter(bytes.subarray(0, 512))
    assert.equal(footer.checksum, vpcChecksum(bytes.subarray(0, 512), FOOTER_FIELD.checksum))
    assert.deepEqual([footer.creatorApp, footer.diskType, footer.dataOffset, footer.currentSize], ['qemu', 3, 512n, 10514432n])
    const header = decodeDynamicHeader(bytes.subarray(512, 1536))
    assert.equal(header.checksum, vpcChecksum(bytes.subarray(512, 1536), DYNAMIC_FIELD.checksum))
    assert.deepEqual([header.cookie, header.tableOffset, header.maxTableEntries, header.blockSize], ['cxsparse', 1536n, 6, 2 * MiB])
    assert.ok(bytes.subarray(1536, 2048).every((b) => b === 0xff))
  })
  it('fixed with force_size: guest bytes then the footer, creator qem2', async () => {
    const bytes = (await newVpc(10 * MiB, { subformat: 'fixed', force_size: 'on' })).bytes()
    assert.equal(bytes.length, 10 * MiB + 512)
    const footer = decodeFooter(bytes.subarray(10 * MiB))
    assert.deepEqual([footer.creatorApp, footer.diskType, footer.dataOffset, footer.cylinders], ['qem2', 2, 0xffffffffffffffffn, 65535])
    const device = await openVpc(bytes)
    assert.equal(device.size, 10 * MiB)
  })
  it('refuses a bad subformat and a size above 2040 GiB', async () => {
    await rejects(newVpc(MiB, { subformat: 'sparse' }), 'INVALID_ARGUMENT', /Parameter 'subformat' does not accept value 'sparse'/)
    await rejects(newVpc(2041 * 1024 * MiB), 'INVALID_ARGUMENT', /2040 GiB/, "The image size is too large for file format 'vpc'")
  })
  it('probes: a dynamic disk is vpc, a fixed one is left to raw', async () => {
    const dynamic = (await newVpc(MiB)).bytes()
    const fixed = (await newVpc(MiB, { subformat: 'fixed' })).bytes()
    assert.equal(vpcModule.probe!(dynamic.subarray(0, 2048), dynamic.length, 'd'), 100)
    assert.equal(vpcModule.probe!(fixed.subarray(0, 2048), fixed.length, 'f'), 0)
  })
})

describe('vpc read and write', () => {
  for (const subformat of ['dynamic', 'fixed']) {
    it(`${subformat}: random writes read back, also after reopening`, async () => {
      const storage = await newVpc(7 * MiB, { subformat })
      const device = await openChain(storage, { format: 'vpc', writable: true })
      const model = new Uint8Array(device.size)
      const rand = mulberry32(subformat.length)
      for (let i = 0; i < 30; i++) {
        const offset = rand() % device.size
        const length = Math.min(1 + (rand() % (600 * 1024)), device.size - offset)
        const data = new Uint8Array(length).fill(1 + (rand() % 250))
        await device.write(offset, data)
        model.set(data, offset)
      }
      assert.deepEqual(await device.read(0, device.size), model)
      const again = await openVpc(storage.bytes())
      assert.deepEqual(await again.read(0, again.size), model)
      if (subformat === 'dynamic') {
        // Every block allocated, in first-written order; the footer copy at the end of the file.
        const bytes = storage.bytes()
        assert.equal(bytes.length, 2048 + 4 * (512 + 2 * MiB) + 512)
        assert.deepEqual(bytes.subarray(bytes.length - 512), bytes.subarray(0, 512))
      }
    })
  }
  it('allocation order: bitmap, data, footer at the new end, then the BAT entry', async () => {
    const storage = await newVpc(4 * MiB)
    const log: [number, number][] = []
    const write = storage.write.bind(storage)
    storage.write = async (offset, data) => { log.push([offset, data.length]); return write(offset, data) }
    const device = await openChain(storage, { format: 'vpc', writable: true })
    await device.write(2 * MiB + 4096, new Uint8Array(512).fill(3))
    assert.deepEqual(log, [[2048, 512], [2560, 2 * MiB], [2560 + 2 * MiB, 512], [1536 + 4, 4]])
  })
  it('writes outside the image are refused', async () => {
    const device = await openVpc((await newVpc(MiB)).bytes(), true)
    await rejects(device.write(device.size - 1, new Uint8Array(2)), 'OUT_OF_RANGE', /outside the image/)
  })
})

describe('vpc differencing disks (built from the specification)', () => {
  async function setup(runs: DifferencingSpec['runs'], locators?: DifferencingSpec['locators']) {
    const parentStorage = await newVpc(6 * MiB, {}, '/vms/parent.vhd')
    const parentDevice = await openChain(parentStorage, { format: 'vpc', writable: true })
    const parentGuest = Uint8Array.from({ length: parentDevice.size }, (_, i) => (i * 7 + (i >> 9)) & 0xff)
    await parentDevice.write(0, parentGuest)
    const parent = parentStorage.bytes().slice()
    const spec: DifferencingSpec = { size: 6 * MiB, parentFooter: parent.subarray(0, 512), parentFile: 'parent.vhd', runs, junk: 0xee, ...(locators ? { locators } : {}) }
    const child = buildDifferencing(spec)
    const host = memoryHost({ '/vms/parent.vhd': parent })
    return { spec, child, parentGuest, host }
  }
  const runs = [{ sector: 1, count: 3, fill: 0x22 }, { sector: 4100, count: 10, fill: 0x33 }, { sector: 8192, count: 4096, fill: 0x44 }]

  for (const locators of [undefined, ['W2ku'] as const, ['W2ru'] as const]) {
    it(`reads the parent where bits are clear (locators ${locators?.join(',') ?? 'W2ku,W2ru'})`, async () => {
      const { spec, child, parentGuest, host } = await setup(runs, locators ? [...locators] : undefined)
      if (locators?.[0] === 'W2ku') {
        // An absolute Windows path cannot be opened here: the chain says which name it tried.
        await assert.rejects(openChain(new MemoryStorage(child.slice(), '/vms/child.vhd'), { format: 'vpc', host }), /C:\/vms\/parent\.vhd/)
        return
      }
      const device = await openChain(new MemoryStorage(child.slice(), '/vms/child.vhd'), { format: 'vpc', host })
      assert.equal(device.driver.backing?.name, 'parent.vhd')
      assert.deepEqual(await device.read(0, device.size), expectedDifferencing(spec, parentGuest))
      const first = await device.blockStatus(0, device.size)
      assert.deepEqual([first.depth, first.length], [1, 512])
      const second = await device.blockStatus(512, device.size)
      assert.deepEqual([second.depth, second.length, second.data], [0, 1536, true])
    })
  }
  it('writes copy the parent sectors into a partial block before its bitmap is filled', async () => {
    const { spec, child, parentGuest, host } = await setup(runs)
    const storage = new MemoryStorage(child.slice(), '/vms/child.vhd')
    const device = await openChain(storage, { format: 'vpc', host, writable: true })
    const expected = expectedDifferencing(spec, parentGuest)
    for (const [offset, length, fill] of [[5 * 512, 512, 0x55], [2 * MiB + 100, 10, 0x66], [4 * MiB + 1000, 3000, 0x77]] as const) {
      await device.write(offset, new Uint8Array(length).fill(fill))
      expected.fill(fill, offset, offset + length)
    }
    assert.deepEqual(await device.read(0, device.size), expected)
    const reopened = await openChain(new MemoryStorage(storage.bytes().slice(), '/vms/child.vhd'), { format: 'vpc', host })
    assert.deepEqual(await reopened.read(0, reopened.size), expected)
    // Block 0 is now whole in the child: one extent of depth 0.
    const status = await reopened.blockStatus(0, reopened.size)
    assert.deepEqual([status.depth, status.length], [0, 2 * MiB])
  })
  it('without a parent name it reads as QEMU reads it: a dynamic disk', async () => {
    const { child } = await setup(runs, [])
    const bytes = child.slice()
    bytes.fill(0, 512 + DYNAMIC_FIELD.parentUnicodeName, 512 + DYNAMIC_FIELD.parentUnicodeName + 512)
    const header = decodeDynamicHeader(bytes.subarray(512, 1536))
    assert.equal(header.parentUnicodeName, '')
    const device = await openVpc(bytes)
    assert.equal(device.driver.backing, undefined)
    assert.deepEqual(await device.read(2048, 512), new Uint8Array(512).fill(0xee))
  })
  it('a locator outside the file is refused', async () => {
    const { child } = await setup(runs, ['W2ru'])
    const bytes = child.slice()
    pokeBE(bytes, 512 + DYNAMIC_FIELD.parentLocators + 16, 8, 0x10000000)
    await rejects(openVpc(bytes), 'CORRUPT', /parent locator 0 .* not within the file/)
  })
})

describe('vpc hostile images', () => {
  async function base(): Promise<Uint8Array> {
    const storage = await newVpc(4 * MiB)
    const device = await openChain(storage, { format: 'vpc', writable: true })
    await device.write(0, new Uint8Array(512).fill(1))
    await device.write(2 * MiB, new Uint8Array(512).fill(2))
    return storage.bytes().slice()
  }
  const open = (bytes: Uint8Array) => openVpc(bytes, false, 'bad.vhd')
  const header = (field: number) => 512 + field

  it('a bad footer checksum: QEMU\'s text', async () => {
    const bytes = await base()
    bytes[0x30] = bytes[0x30]! ^ 1
    await rejects(open(bytes), 'CORRUPT', /bad\.vhd: VHD footer at 0x0: checksum/, "Could not open 'bad.vhd': Incorrect header checksum")
  })
  it('too small, no cookie anywhere, bad header magic', async () => {
    await rejects(open(new Uint8Array(100)), 'NOT_AN_IMAGE', /bad\.vhd/, "Could not open 'bad.vhd': File too small for a VHD header")
    await rejects(open(new Uint8Array(4096)), 'NOT_AN_IMAGE', /bad\.vhd/, "Could not open 'bad.vhd': invalid VPC image")
    const bytes = await base()
    bytes[512] = 0x41
    await rejects(open(bytes), 'NOT_AN_IMAGE', /dynamic disk header at 0x200/, "Could not open 'bad.vhd': Invalid header magic")
  })
  it('absurd block sizes and counts', async () => {
    for (const [value, text] of [[3, 'Invalid block size 3'], [256, 'Invalid block size 256'], [0x80000000, 'Page table too small']] as const) {
      const bytes = await base()
      pokeBE(bytes, header(DYNAMIC_FIELD.blockSize), 4, value)
      if (value === 0x80000000) pokeBE(bytes, header(DYNAMIC_FIELD.maxTableEntries), 4, 0)
      await rejects(open(bytes), value === 0x80000000 ? 'CORRUPT' : 'UNSUPPORTED', /bad\.vhd/, `Could not open 'bad.vhd': ${text}`)
    }
    for (const [entries, shown] of [[0x80000000, -2147483648], [0x20000000, 536870912]] as const) {
      const bytes = await base()
      pokeBE(bytes, header(DYNAMIC_FIELD.maxTableEntries), 4, entries)
      await rejects(open(bytes), 'UNSUPPORTED', /bad\.vhd/, `Could not open 'bad.vhd': Max Table Entries too large (${shown})`)
    }
  })
  it('a BAT outside the file is refused before it is read (no allocation the file cannot back)', async () => {
    const bytes = await base()
    pokeBE(bytes, header(DYNAMIC_FIELD.maxTableEntries), 4, 0x1000000)
    pokeBE(bytes, header(DYNAMIC_FIELD.tableOffset), 8, 0x100000)
    const storage = new MemoryStorage(bytes, 'bad.vhd')
    let largest = 0
    const read = storage.read.bind(storage)
    storage.read = async (offset, length) => { largest = Math.max(largest, length); return read(offset, length) }
    await rejects(openChain(storage, { format: 'vpc' }), 'CORRUPT', /BAT at 0x100000/,
      "Could not open 'bad.vhd': block-vpc: free_data_block_offset points after the end of file. The image has been truncated.")
    assert.ok(largest <= 1024, `read ${largest} bytes at once`)
    const huge = await base()
    pokeBE(huge, header(DYNAMIC_FIELD.tableOffset), 8, 0xffffffffffff0000n)
    await rejects(open(huge), 'CORRUPT', /BAT offset/, "Could not open 'bad.vhd': Error reading pagetable")
  })
  it('BAT entries past the end, over metadata or over another block', async () => {
    const cases: [number, RegExp][] = [[0x10000, /past the end of the file/], [3, /over the BAT/], [0, /over the footer copy/], [5, /over the block of entry 0/]]
    for (const [entry, text] of cases) {
      const bytes = await base()
      pokeBE(bytes, 1536 + (entry === 5 ? 4 : 0), 4, entry)
      await rejects(open(bytes), 'CORRUPT', text)
    }
  })
  it('a size above 2040 GiB (sized by current_size): File too large', async () => {
    const bytes = await base()
    bytes.set([0x77, 0x69, 0x6e, 0x20], FOOTER_FIELD.creatorApp) // 'win '
    pokeBE(bytes, FOOTER_FIELD.currentSize, 8, 0x30000000000n)
    resumFooter(bytes, 0)
    await rejects(open(bytes), 'UNSUPPORTED', /2040 GiB/, "Could not open 'bad.vhd': Could not open 'bad.vhd': File too large")
  })
  it('a Hyper-V footer is sized by current_size, a Virtual PC one by CHS', async () => {
    const bytes = await base()
    pokeBE(bytes, FOOTER_FIELD.currentSize, 8, 3 * MiB)
    resumFooter(bytes, 0)
    assert.equal((await open(bytes)).size, 4 * MiB + 18432)
    bytes.set([0x77, 0x69, 0x6e, 0x20], FOOTER_FIELD.creatorApp)
    resumFooter(bytes, 0)
    assert.equal((await open(bytes)).size, 3 * MiB)
  })
})
