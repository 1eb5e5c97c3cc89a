// The failure tests start from images built by test/helpers/build-qcow2.ts, not by qemu: prove
// each base is valid — `qemu-img check` finds nothing, and qemu-img and qimg read the same bytes.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs } from '../../src/node/codecs.js'
import { buildQcow2, pattern, type BuiltImage } from '../helpers/build-qcow2.js'
import { memoryHost } from '../helpers/memory-host.js'
import { needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { BASES, snapshotImage } from './bases.js'

const dir = tempDir('qimg-bases-')
after(() => dir.cleanup())

/** Writes `image` (and its data file) to the temp dir; returns its path. */
function save(name: string, image: BuiltImage): string {
  const path = dir.file(name)
  writeFileSync(path, image.bytes)
  if (image.dataFile) writeFileSync(dir.file('disk.raw'), image.dataFile)
  return path
}

/** Asserts `qemu-img check` reports no corruption, leak or check error. */
async function assertClean(path: string): Promise<void> {
  // QEMU 7.2 resolves an external data file name against the working directory, not the image's.
  const r = await run('qemu-img', ['check', '--output=json', path], { cwd: dir.path })
  assert.equal(r.code, 0, `qemu-img check ${path}: ${r.stderr}${r.stdout}`)
  const report = JSON.parse(r.stdout) as Record<string, unknown>
  for (const key of ['corruptions', 'leaks', 'check-errors']) assert.ok(!report[key], `${key} in ${r.stdout}`)
}

/** Guest bytes as qemu-img reads them (optionally at a snapshot). */
async function qemuRead(path: string, snapshot?: string): Promise<Uint8Array> {
  const out = dir.file('out.raw')
  await runOk('qemu-img', ['convert', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), '-O', 'raw', path, out], { cwd: dir.path })
  return new Uint8Array(readFileSync(out))
}

/** Guest bytes as qimg reads them from memory. */
async function qimgRead(image: BuiltImage, snapshot?: string): Promise<Uint8Array> {
  const host = memoryHost({ 'disk.raw': image.dataFile ?? new Uint8Array(0), 'base.qcow2': buildQcow2({ virtualSize: 65536 }).bytes })
  const device = await openChain(new MemoryStorage(image.bytes, 'image.qcow2'), { codecs: nodeCodecs, host, snapshot })
  try {
    return await device.read(0, device.size)
  } finally {
    await device.close()
  }
}

for (const [name, make] of Object.entries(BASES)) {
  test(`base image '${name}' passes qemu-img check and reads the same in qemu-img and qimg`, async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const image = make()
    // The backing file the 'backing-bitmaps' base names: empty, so the guest is the overlay's.
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', dir.file('base.qcow2'), '64K'])
    const path = save(`${name}.qcow2`, image)
    await assertClean(path)
    assert.deepEqual(await qemuRead(path), image.guest)
    assert.deepEqual(await qimgRead(image), image.guest)
  })
}

test('snapshots of the builder read the same in qemu-img and qimg', async (t) => {
  if (!needTools(t, 'qemu-img')) return
  const image = snapshotImage()
  const path = save('snapshots.qcow2', image)
  const own = new Uint8Array(65536)
  own.set(pattern(512, 0x54), 1024)
  assert.deepEqual(await qemuRead(path, 'shared'), image.guest)
  assert.deepEqual(await qimgRead(image, 'shared'), image.guest)
  assert.deepEqual(await qemuRead(path, 'own'), own)
  assert.deepEqual(await qimgRead(image, 'own'), own)
  const info = JSON.parse(await runOk('qemu-img', ['info', '--output=json', path])) as { snapshots: { id: string; name: string }[] }
  assert.deepEqual(info.snapshots.map((s) => [s.id, s.name]), [['1', 'shared'], ['2', 'own']])
})

test('bitmaps of the builder are listed by qemu-img', async (t) => {
  if (!needTools(t, 'qemu-img')) return
  const path = save('bitmaps.qcow2', BASES['backing-bitmaps']!())
  const info = JSON.parse(await runOk('qemu-img', ['info', '--output=json', '--force-share', path])) as { 'format-specific': { data: { bitmaps: unknown } } }
  assert.deepEqual(info['format-specific'].data.bitmaps, [
    { flags: ['auto'], name: 'dirty', granularity: 65536 },
    { flags: [], name: 'fine', granularity: 512 },
  ])
})

test('every refcount width and several cluster sizes build clean images', async (t) => {
  if (!needTools(t, 'qemu-img')) return
  for (const clusterBits of [9, 12, 16]) {
    for (let refcountOrder = 0; refcountOrder <= 6; refcountOrder++) {
      const cs = 2 ** clusterBits
      const image = buildQcow2({
        virtualSize: 40 * cs, clusterBits, refcountOrder,
        clusters: { 0: { kind: 'data', data: pattern(cs, 1) }, 7: { kind: 'compressed', data: pattern(cs, 2) }, 39: { kind: 'zero' } },
        snapshots: refcountOrder === 0 ? [] : [{ name: 's' }], // 1-bit refcounts cannot share clusters
      })
      const path = save(`rc${clusterBits}-${refcountOrder}.qcow2`, image)
      await assertClean(path)
      assert.deepEqual(await qemuRead(path), image.guest, `cluster bits ${clusterBits}, refcount order ${refcountOrder}`)
    }
  }
})
