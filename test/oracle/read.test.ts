// Oracle: qimg reads every kind of QCOW2 image QEMU makes, bit-exact. Each image of the matrix is
// built by qemu-img/qemu-io, then read (a) through the library and (b) with `qimg convert -O raw`,
// and both are compared byte for byte with `qemu-img convert -O raw` of the same image.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { openImage } from '../../src/node/open.js'
import { needTools, tempDir } from '../helpers/oracle.js'
import { SNAPSHOT_CASE, buildImage, firstDifference, imageMatrix, pathOf, qemuImgFor, qemuRaw, qimgFor, type ImageRef } from './images.js'

const root = tempDir('qimg-oracle-read-')
after(() => root.cleanup())

/** Asserts `actual` is byte-identical to qemu's `expected`, naming the first differing offset. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected)
  if (at < 0) return
  assert.fail(`${what}: differs from qemu-img at byte ${at} (0x${at.toString(16)}): ` +
    `got ${actual[at]}, qemu has ${expected[at]} (lengths ${actual.length} / ${expected.length})`)
}

/** The guest disk through the library (snapshot optional). */
async function libraryRead(ref: ImageRef, snapshot?: string): Promise<Uint8Array> {
  const device = await openImage(pathOf(ref), snapshot === undefined ? {} : { snapshot })
  try {
    return await device.read(0, device.size)
  } finally {
    await device.close()
  }
}

/** `qimg convert -O raw` output, read back; the command must succeed. */
async function qimgRaw(ref: ImageRef, out: string, extra: string[] = []): Promise<Buffer> {
  const r = await qimgFor(ref, ['convert', ...extra, '-O', 'raw', ref.file, out])
  assert.equal(r.code, 0, `qimg convert ${extra.join(' ')} failed: ${r.stderr}`)
  return readFileSync(out)
}

describe('read matrix: library and qimg convert equal qemu-img convert', { concurrency: 3 }, () => {
  for (const image of imageMatrix()) {
    it(image.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dir = mkdtempSync(join(root.path, 'case-'))
      const ref = await buildImage(image, dir)
      const expected = await qemuRaw(ref, join(dir, 'qemu.raw'))
      assertSameBytes(await libraryRead(ref), expected, 'library read')
      assertSameBytes(await qimgRaw(ref, join(dir, 'qimg.raw')), expected, 'qimg convert -O raw')
    })
  }
})

describe('internal snapshots', () => {
  const dir = join(root.path, 'snapshots')
  let built: Promise<ImageRef> | undefined
  /** The snapshot image, built once for both tests. */
  const snapshotImage = (): Promise<ImageRef> => {
    if (!built) {
      mkdirSync(dir)
      built = buildImage(SNAPSHOT_CASE, dir)
    }
    return built
  }

  it('each snapshot reads like qemu-img convert -l, through every way of naming it', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const ref = await snapshotImage()
    const ids: Record<string, string> = { s1: '1', s2: '2' }
    const seen: Buffer[] = []
    for (const name of SNAPSHOT_CASE.snapshots ?? []) {
      const expected = await qemuRaw(ref, join(dir, `qemu-${name}.raw`), ['-l', `snapshot.name=${name}`])
      // qemu agrees with itself on every spelling; qimg must give the same bytes for each.
      assertSameBytes(await qemuRaw(ref, join(dir, `qemu-${name}-id.raw`), ['-l', `snapshot.id=${ids[name]}`]), expected, `qemu-img -l snapshot.id=${ids[name]}`)
      assertSameBytes(await libraryRead(ref, name), expected, `library { snapshot: '${name}' }`)
      assertSameBytes(await libraryRead(ref, ids[name]), expected, `library { snapshot: '${ids[name]}' }`)
      for (const spelling of [name, ids[name]!, `snapshot.name=${name}`, `snapshot.id=${ids[name]}`, `snapshot.id=${ids[name]},snapshot.name=${name}`]) {
        assertSameBytes(await qimgRaw(ref, join(dir, 'qimg.raw'), ['-l', spelling]), expected, `qimg convert -l ${spelling}`)
      }
      seen.push(expected)
    }
    // The snapshots really differ from each other and from the active state. Both were taken at
    // 2 MiB and the image then grew to 3 MiB: qemu-img reads a snapshot at the current size, with
    // zeros past the snapshot's own L1 range (qcow2_snapshot_load_tmp keeps the disk size).
    const active = await qemuRaw(ref, join(dir, 'active.raw'))
    for (const bytes of [...seen, active]) assert.equal(bytes.length, 3 * 1024 * 1024)
    assert.ok(seen[0]!.subarray(2 * 1024 * 1024).every((b) => b === 0))
    assert.notDeepEqual(seen[0], seen[1])
    assert.notDeepEqual(seen[1], active)
  })

  it('a snapshot that does not exist fails in qimg as in qemu-img', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const ref = await snapshotImage()
    for (const spelling of ['s3', 'snapshot.id=1,snapshot.name=s2']) {
      const theirs = await qemuImgFor(ref, ['convert', '-l', spelling, '-O', 'raw', ref.file, join(dir, 'qemu-out.raw')])
      const ours = await qimgFor(ref, ['convert', '-l', spelling, '-O', 'raw', ref.file, join(dir, 'qimg-out.raw')])
      assert.equal(theirs.code, 1, `qemu-img convert -l ${spelling} should fail`)
      assert.equal(ours.code, theirs.code, `qimg convert -l ${spelling}: ${ours.stderr}`)
      await assert.rejects(openImage(pathOf(ref), { snapshot: spelling === 's3' ? 's3' : { id: '1', name: 's2' } }), { code: 'NO_SUCH_SNAPSHOT' })
    }
  })
})
