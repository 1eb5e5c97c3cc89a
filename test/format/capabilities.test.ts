// The capability guards (format/capabilities.ts and its siblings): each says yes only for a
// driver with every method the capability names, the real drivers answer as their formats
// can, and the generic commands refuse a format without the capability in qemu-img's words.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { canMakeEmpty, canResize, canSetBacking, hasCompressedWrites, hasSnapshots, hasVmState } from '../../src/format/capabilities.js'
import { hasPersistentBitmaps } from '../../src/format/bitmap-capability.js'
import { isAmendable } from '../../src/format/amend-capability.js'
import type { FormatDriver } from '../../src/format/driver.js'
import type { BlockDevice } from '../../src/format/device.js'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { isImageError } from '../../src/errors.js'
import { formatModules } from '../../src/formats.js'
import { resizeImage } from '../../src/commands/resize.js'
import { emptyImage } from '../../src/commands/commit.js'
import { rebaseImage } from '../../src/commands/rebase.js'
import { amendImage } from '../../src/commands/amend.js'
import { addBitmap, bitmapsOf } from '../../src/cli/commands/bitmap.js'
import { nodeCrypto } from '../../src/node/crypto.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'

const MiB = 1024 * 1024
const SECRET = new TextEncoder().encode('caps')

/** A driver with only `methods` (and `extra` fields) beyond the FormatDriver basics. */
function fake(methods: string[], extra: Record<string, unknown> = {}): FormatDriver {
  const driver: Record<string, unknown> = { format: 'fake', virtualSize: 0, backing: undefined, warnings: [], ...extra }
  for (const m of methods) driver[m] = async () => undefined
  return driver as unknown as FormatDriver
}

const GUARDS = [
  { guard: canResize, methods: ['resize'] },
  { guard: canMakeEmpty, methods: ['makeEmpty'] },
  { guard: hasSnapshots, methods: ['createSnapshot', 'applySnapshot', 'deleteSnapshot'] },
  { guard: hasVmState, methods: ['saveVmState', 'loadVmState', 'vmStateOffset'] },
  { guard: hasCompressedWrites, methods: ['writeCompressed'] },
  { guard: hasPersistentBitmaps, methods: ['readBitmaps', 'loadedBitmaps', 'bitmapRefusal', 'addBitmap', 'removeBitmap'] },
  { guard: isAmendable, methods: ['amend'] },
]

describe('capability guards', () => {
  for (const { guard, methods } of GUARDS) {
    it(`${guard.name}: yes with ${methods.join(', ')}, no with any one missing or not a function`, () => {
      assert.equal(guard(fake(methods)), true)
      assert.equal(guard(fake([])), false)
      for (const missing of methods) {
        assert.equal(guard(fake(methods.filter((m) => m !== missing))), false, `without ${missing}`)
        assert.equal(guard(fake(methods.filter((m) => m !== missing), { [missing]: 1 })), false, `${missing} not a function`)
      }
    })
  }

  it('canSetBacking also needs the allocation unit as a number', () => {
    assert.equal(canSetBacking(fake(['setBacking'], { allocationUnit: 65536 })), true)
    assert.equal(canSetBacking(fake(['setBacking'])), false)
    assert.equal(canSetBacking(fake(['setBacking'], { allocationUnit: '65536' })), false)
    assert.equal(canSetBacking(fake([], { allocationUnit: 512, setBacking: 'x' })), false)
  })
})

/** A new image of `format` in memory, opened writable through the chain opener. */
async function created(format: string, size = 4 * MiB, options: Record<string, string> = {}): Promise<BlockDevice> {
  const module = formatModules.find((m) => m.name === format)!
  const storage = new MemoryStorage(new Uint8Array(0), `img.${format}`)
  await module.create!({ storage, size, options: new Map(Object.entries(options)), secret: SECRET, crypto: nodeCrypto, compressors: nodeCompressors })
  return openChain(storage, { format, writable: true, secret: async () => SECRET, crypto: nodeCrypto, codecs: nodeCodecs, compressors: nodeCompressors })
}

/** Which guards each real driver passes: what its format can do. */
const EXPECTED: Record<string, string[]> = {
  qcow2: ['canResize', 'canMakeEmpty', 'canSetBacking', 'hasSnapshots', 'hasVmState', 'hasCompressedWrites', 'hasPersistentBitmaps', 'isAmendable'],
  raw: ['canResize'],
  luks: ['canResize'],
  qcow: ['hasCompressedWrites'],
  vdi: [],
  vpc: [],
  vmdk: ['hasCompressedWrites'],
}

describe('every format module creates its images (no format is created outside its module)', () => {
  for (const module of formatModules) {
    it(module.name, async () => {
      assert.ok(module.create, `${module.name} has a create`)
      const device = await created(module.name, 4 * MiB, module.name === 'luks' ? { 'iter-time': '0' } : {})
      try {
        assert.equal(device.driver.format, module.name)
        assert.ok(device.size >= 4 * MiB, `${device.size}`)
        if (module.zeroInit !== false) assert.deepEqual([...await device.read(0, 4096)].some((b) => b !== 0), false)
      } finally {
        await device.close()
      }
    })
  }
})

describe('the drivers have the capabilities of their formats', () => {
  const all = [...GUARDS.map((g) => g.guard), canSetBacking]
  for (const [format, expected] of Object.entries(EXPECTED)) {
    it(format, async () => {
      const device = await created(format, 4 * MiB, format === 'luks' ? { 'iter-time': '0' } : {})
      try {
        const has = all.filter((guard) => guard(device.driver)).map((g) => g.name).sort()
        assert.deepEqual(has, [...expected].sort())
      } finally {
        await device.close()
      }
    })
  }
})

/** Runs `action` on a new `format` image and expects `code` and `message`. */
async function refuses(format: string, action: (device: BlockDevice) => Promise<unknown>, code: string, message: string | RegExp): Promise<void> {
  const device = await created(format)
  try {
    await assert.rejects(action(device), (e) => isImageError(e) && e.code === code && (typeof message === 'string' ? e.message === message : message.test(e.message)))
  } finally {
    await device.close()
  }
}

describe('commands refuse a format without the capability, in the same words as before', () => {
  it('resize: qemu-img text for a format that cannot resize', async () => {
    await refuses('vdi', (d) => resizeImage(d, 8 * MiB), 'UNSUPPORTED', 'Image format driver does not support resize')
  })
  it('commit: a top image that cannot be emptied', async () => {
    await refuses('raw', emptyImage, 'UNSUPPORTED', "commit: cannot empty a 'raw' image")
    await refuses('vdi', emptyImage, 'UNSUPPORTED', "commit: cannot empty a 'vdi' image")
  })
  it('rebase: a format without a backing file', async () => {
    await refuses('vdi', (d) => rebaseImage(d, { newBacking: undefined, name: undefined, format: undefined, unsafe: true }), 'UNSUPPORTED', "rebase: format 'vdi' has no backing file")
  })
  it('amend: a format without amendable options', async () => {
    const device = await created('raw')
    await assert.rejects(amendImage(async () => device, async () => { throw new Error('not reached') }, new Map([['size', '1M']])),
      (e) => isImageError(e, 'UNSUPPORTED') && e.message === "amend: format 'raw' has no amendable options")
  })
  it('bitmap --add: a format without persistent bitmaps; none to read', async () => {
    const device = await created('qcow')
    try {
      assert.throws(() => addBitmap(device, 'b', 0), (e) => isImageError(e, 'INVALID_ARGUMENT') && /^Can't store persistent bitmaps to #block\d{3}: Operation not supported$/.test(e.message))
      assert.deepEqual(await bitmapsOf(device), [])
    } finally {
      await device.close()
    }
  })
  it('vm state: a format without a VM state area', async () => {
    await refuses('raw', (d) => d.saveVmState(0, new Uint8Array(512)), 'UNSUPPORTED', "img.raw: format 'raw' has no VM state area")
  })
  it('compressed writes: a format without compressed clusters', async () => {
    await refuses('vdi', (d) => d.writeCompressed(0, new Uint8Array(MiB)), 'UNSUPPORTED', "img.vdi: format 'vdi' has no compressed clusters")
  })
})

describe('qcow2 through its capabilities', () => {
  it('resizes (grow, then shrink clearing the kept tail of the last cluster) and empties', async () => {
    const device = await created('qcow2', 2 * MiB)
    try {
      const data = new Uint8Array(128 * 1024).fill(0xa5)
      await device.write(MiB, data)
      await resizeImage(device, 3 * MiB)
      assert.equal(device.size, 3 * MiB)
      await resizeImage(device, MiB + 4096, { shrink: true })
      await resizeImage(device, 2 * MiB)
      const back = await device.read(MiB, 128 * 1024)
      assert.deepEqual(back.subarray(0, 4096), data.subarray(0, 4096), 'the kept bytes')
      assert.ok(back.subarray(4096).every((b) => b === 0), 'the bytes past the shrink read as zeros after growing again')
      await assert.rejects(resizeImage(device, 2 * MiB + 100), (e) => isImageError(e, 'INVALID_ARGUMENT') && e.message === 'The new size must be a multiple of 512')
      await emptyImage(device)
      assert.equal((await device.isAllocated(0, device.size)).allocated, false)
    } finally {
      await device.close()
    }
  })

  it('adds a bitmap through PersistentBitmaps, and refuses one on a v2 image with the qcow2 reason', async () => {
    const device = await created('qcow2', 2 * MiB)
    try {
      const added = addBitmap(device, 'b0', 0)
      assert.equal(added.granularity, 65536, 'the default: the cluster size within [4 KiB, 64 KiB]')
      assert.throws(() => addBitmap(device, 'b0', 0), (e) => isImageError(e) && e.message === 'Bitmap already exists: b0')
    } finally {
      await device.close()
    }
    const v2 = await created('qcow2', 2 * MiB, { compat: '0.10' })
    try {
      assert.throws(() => addBitmap(v2, 'b', 0), (e) => isImageError(e) && /^Can't make bitmap 'b' persistent in '#block\d{3}': Cannot store dirty bitmaps in qcow2 v2 files$/.test(e.message))
    } finally {
      await v2.close()
    }
  })

  it('keeps VM state past the disk, records a new backing file, and takes snapshots through the capabilities', async () => {
    const device = await created('qcow2', 2 * MiB)
    try {
      const driver = device.driver
      assert.ok(hasVmState(driver) && canSetBacking(driver) && hasSnapshots(driver))
      assert.ok(driver.vmStateOffset() >= device.size, 'the VM state area starts past the disk')
      const state = new Uint8Array(70000).map((_, i) => i % 251)
      await device.saveVmState(1000, state)
      assert.deepEqual(await device.loadVmState(1000, state.length), state)
      assert.equal(device.size, 2 * MiB, 'the disk keeps its size')
      await rebaseImage(device, { newBacking: undefined, name: 'base.raw', format: 'raw', unsafe: true })
      assert.deepEqual(driver.backing, { name: 'base.raw', format: 'raw' })
      await device.write(0, new Uint8Array(4096).fill(1))
      await driver.createSnapshot('s1')
      await device.write(0, new Uint8Array(4096).fill(2))
      await driver.applySnapshot('s1')
      assert.ok((await device.read(0, 4096)).every((b) => b === 1), 'the snapshot content is back')
      await driver.deleteSnapshot('s1')
      await assert.rejects(driver.applySnapshot('s1'), isImageError)
    } finally {
      await device.close()
    }
  })
})
