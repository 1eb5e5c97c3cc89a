// Oracle: qimg reads every kind of QCOW2 image QEMU makes, bit-exact. Each image of the matrix is
// built by qemu-img/qemu-io, then read (a) through the library and (b) with `qimg convert -O raw`,
// and both are compared byte for byte with `qemu-img convert -O raw` of the same image.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { openImage } from '../../src/node/open.js'
import { needTools, tempDir } from '../helpers/oracle.js'
import { SNAPSHOT_CASE, buildImage, firstDifference, imageMatrix, pathOf, qemuImgFor, qemuRawFile, qimgFor, type ImageRef } from './images.js'

const root = tempDir('qimg-oracle-read-')
after(() => root.cleanup())

const CHUNK = 1024 * 1024

/** Reads `length` bytes at `offset` of an open file (short only at its end). */
function readAt(fd: number, offset: number, length: number): Uint8Array {
  const buffer = Buffer.alloc(length)
  return buffer.subarray(0, readSync(fd, buffer, 0, length, offset))
}

/**
 * Asserts the bytes `read` gives for a disk of `size` bytes are byte-identical to qemu-img's raw
 * output `expectedPath`, chunk by chunk (memory stays small), naming the first differing offset.
 */
async function assertSameBytes(size: number, read: (offset: number, length: number) => Promise<Uint8Array> | Uint8Array, expectedPath: string, what: string): Promise<void> {
  const fd = openSync(expectedPath, 'r')
  try {
    const expectedSize = fstatSync(fd).size
    assert.equal(size, expectedSize, `${what}: ${size} bytes, qemu-img gives ${expectedSize}`)
    for (let offset = 0; offset < size; offset += CHUNK) {
      const length = Math.min(CHUNK, size - offset)
      const actual = await read(offset, length)
      const expected = readAt(fd, offset, length)
      const at = firstDifference(actual, expected)
      if (at < 0) continue
      const where = offset + at
      assert.fail(`${what}: differs from qemu-img at byte ${where} (0x${where.toString(16)}): got ${actual[at]}, qemu has ${expected[at]}`)
    }
  } finally {
    closeSync(fd)
  }
}

/** The guest disk through the library (snapshot optional) equals qemu-img's raw output. */
async function assertLibraryRead(ref: ImageRef, expectedPath: string, snapshot?: string): Promise<void> {
  const device = await openImage(pathOf(ref), snapshot === undefined ? {} : { snapshot })
  try {
    await assertSameBytes(device.size, (offset, length) => device.read(offset, length), expectedPath, `library read${snapshot === undefined ? '' : ` { snapshot: '${snapshot}' }`}`)
  } finally {
    await device.close()
  }
}

/** `qimg convert -O raw [extra]` succeeds and its output equals qemu-img's raw output. */
async function assertQimgConvert(ref: ImageRef, out: string, expectedPath: string, extra: string[] = []): Promise<void> {
  const r = await qimgFor(ref, ['convert', ...extra, '-O', 'raw', ref.file, out])
  assert.equal(r.code, 0, `qimg convert ${extra.join(' ')} failed: ${r.stderr}`)
  const fd = openSync(out, 'r')
  try {
    await assertSameBytes(fstatSync(fd).size, (offset, length) => readAt(fd, offset, length), expectedPath, `qimg convert ${extra.join(' ')} -O raw`)
  } finally {
    closeSync(fd)
  }
}

describe('read matrix: library and qimg convert equal qemu-img convert', { concurrency: 3 }, () => {
  for (const image of imageMatrix()) {
    it(image.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dir = mkdtempSync(join(root.path, 'case-'))
      const ref = await buildImage(image, dir)
      const expected = await qemuRawFile(ref, join(dir, 'qemu.raw'))
      await assertLibraryRead(ref, expected)
      await assertQimgConvert(ref, join(dir, 'qimg.raw'), expected)
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
    for (const name of SNAPSHOT_CASE.snapshots ?? []) {
      const id = ids[name]!
      const expected = await qemuRawFile(ref, join(dir, `qemu-${name}.raw`), ['-l', `snapshot.name=${name}`])
      // qemu agrees with itself on every spelling; qimg must give the same bytes for each.
      const byId = await qemuRawFile(ref, join(dir, `qemu-${name}-id.raw`), ['-l', `snapshot.id=${id}`])
      assert.deepEqual(readFileSync(byId), readFileSync(expected), `qemu-img -l snapshot.id=${id}`)
      await assertLibraryRead(ref, expected, name)
      await assertLibraryRead(ref, expected, id)
      for (const spelling of [name, id, `snapshot.name=${name}`, `snapshot.id=${id}`, `snapshot.id=${id},snapshot.name=${name}`]) {
        await assertQimgConvert(ref, join(dir, 'qimg.raw'), expected, ['-l', spelling])
      }
    }
    // The snapshots really differ from each other and from the active state. Both were taken at
    // 2 MiB and the image then grew to 3 MiB: qemu-img reads a snapshot at the current size, with
    // zeros past the snapshot's own L1 range (qcow2_snapshot_load_tmp keeps the disk size).
    const [s1, s2, active] = [
      readFileSync(join(dir, 'qemu-s1.raw')),
      readFileSync(join(dir, 'qemu-s2.raw')),
      readFileSync(await qemuRawFile(ref, join(dir, 'active.raw'))),
    ]
    for (const bytes of [s1, s2, active]) assert.equal(bytes.length, 3 * 1024 * 1024)
    assert.ok(s1.subarray(2 * 1024 * 1024).every((b) => b === 0))
    assert.notDeepEqual(s1, s2)
    assert.notDeepEqual(s2, active)
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
