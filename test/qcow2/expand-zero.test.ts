// Zero-cluster expansion for a v2 downgrade, on in-memory images: every L1 table (active and
// snapshots) ends without zero entries, guest content of each stays, refcounts stay exact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { amendImage } from '../../src/commands/amend.js'
import { openChain } from '../../src/format/chain.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { checkQcow2 } from '../../src/qcow2/check.js'
import { writeSkeleton } from '../../src/qcow2/create.js'
import { Qcow2Image } from '../../src/qcow2/image.js'
import { memoryHost } from '../helpers/memory-host.js'

const K = 64 * 1024
const SIZE = 4 * 1024 * 1024

async function image(backing?: Uint8Array): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), 'img.qcow2')
  await writeSkeleton(storage, backing ? { size: SIZE, backingFile: 'base.raw', backingFormat: 'raw' } : { size: SIZE })
  // As node/create.ts does: the L1 table grown to the size, then the size set.
  const img = await Qcow2Image.open(storage, { writable: true })
  await img.writer.growL1(1)
  await img.setVirtualSize(SIZE)
  await img.close()
  return storage
}

function open(storage: MemoryStorage, base: Uint8Array | undefined, options: { writable?: boolean; snapshot?: string } = {}): Promise<BlockDevice> {
  return openChain(storage, { format: 'qcow2', host: memoryHost(base ? { 'base.raw': base } : {}), ...options })
}

/** What each layer reads: the active one and every snapshot, whole. */
async function contents(storage: MemoryStorage, base: Uint8Array | undefined): Promise<Map<string, Uint8Array>> {
  const device = await open(storage, base)
  const ids = (device.driver as Qcow2Image).snapshots.map((s) => s.id)
  const out = new Map([['', await device.read(0, SIZE)]])
  await device.close()
  for (const id of ids) {
    const snap = await open(storage, base, { snapshot: id })
    out.set(id, await snap.read(0, SIZE))
    await snap.close()
  }
  return out
}

async function downgradeAndCheck(storage: MemoryStorage, base: Uint8Array | undefined): Promise<void> {
  const before = await contents(storage, base)
  await amendImage(() => open(storage, base, { writable: true }), async () => storage, new Map([['compat', '0.10']]))
  const result = await checkQcow2(storage)
  assert.equal(result.corruptions, 0, 'no corruptions')
  assert.equal(result.leaks, 0, 'no leaks')
  const device = await open(storage, base)
  const driver = device.driver as Qcow2Image
  assert.equal(driver.layout.header.version, 2)
  for (let at = 0; at < SIZE;) {
    const extent = await driver.getExtent(at, SIZE - at)
    assert.notEqual(extent.kind, 'zero', `no zero clusters left (at ${at})`)
    at += extent.length
  }
  await device.close()
  const after = await contents(storage, base)
  for (const [id, bytes] of before) assert.deepEqual(after.get(id), bytes, id ? `snapshot ${id}` : 'active layer')
}

async function act(storage: MemoryStorage, base: Uint8Array | undefined, fn: (device: BlockDevice, image: Qcow2Image) => Promise<void>): Promise<void> {
  const device = await open(storage, base, { writable: true })
  await fn(device, device.driver as Qcow2Image)
  await device.close()
}

test('zero clusters in tables shared by snapshots and the active layer, no backing file', async () => {
  const storage = await image()
  await act(storage, undefined, async (d, img) => {
    await d.write(0, new Uint8Array(4 * K).fill(0x11))
    await d.writeZeroes(K, K) // allocated zero cluster (over data)
    await d.writeZeroes(2 * 1024 * 1024, 2 * K) // unallocated zero clusters
    await img.createSnapshot('s1')
    await img.createSnapshot('s2')
  })
  await downgradeAndCheck(storage, undefined)
})

test('an allocated zero cluster over data a snapshot still reads gets a cluster of its own', async () => {
  for (const base of [undefined, new Uint8Array(SIZE).fill(0xbb)]) {
    const storage = await image(base)
    await act(storage, base, async (d, img) => {
      await d.write(0, new Uint8Array(4 * K).fill(0x11))
      await img.createSnapshot('s1')
      await d.writeZeroes(0, 2 * K)
      await d.writeZeroes(SIZE - K, K)
      await img.createSnapshot('s2')
      await d.write(3 * K, new Uint8Array(K).fill(0x22))
    })
    await downgradeAndCheck(storage, base)
  }
})

test('zero clusters over a backing file become clusters of zeros', async () => {
  const base = new Uint8Array(SIZE).fill(0xbb)
  const storage = await image(base)
  await act(storage, base, async (d, img) => {
    await d.writeZeroes(0, 3 * K)
    await img.createSnapshot('s1')
    await d.writeZeroes(SIZE / 2, K)
  })
  await downgradeAndCheck(storage, base)
})
