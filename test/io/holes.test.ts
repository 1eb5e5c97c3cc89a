import { test } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, fsyncSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findAllocation, holesSupported } from '../../src/io/holes.js'

const KiB = 1024
const MiB = 1024 * KiB
const SIZE = 4 * MiB

test('findAllocation reports the data and holes of a sparse file', (t) => {
  if (!holesSupported()) {
    const reason = 'native addon qimg_seek not built (npm run prepare builds it)'
    if (process.env['CI']) assert.fail(`${reason}: CI must have it`)
    t.skip(reason)
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'qimg-holes-'))
  const fd = openSync(join(dir, 'sparse.img'), 'w+')
  try {
    const block = Buffer.alloc(4 * KiB, 0xa5)
    writeSync(fd, block, 0, block.length, 0)
    writeSync(fd, block, 0, block.length, 1 * MiB)
    ftruncateSync(fd, SIZE)
    fsyncSync(fd)

    const probe = findAllocation(fd, 0, SIZE)
    if (probe === undefined) {
      t.skip(`the filesystem of ${tmpdir()} does not support SEEK_DATA`)
      return
    }
    // Data at 0: at least the 4 KiB written, and not into the hole at 64 KiB.
    assert.equal(probe.hole, false)
    assert.ok(probe.length >= 4 * KiB && probe.length <= 64 * KiB, `data run at 0 is ${probe.length}`)

    assert.deepEqual(findAllocation(fd, 64 * KiB, SIZE), { hole: true, length: 1 * MiB - 64 * KiB })
    // Capped at the length asked for.
    assert.deepEqual(findAllocation(fd, 64 * KiB, 4 * KiB), { hole: true, length: 4 * KiB })
    assert.deepEqual(findAllocation(fd, 1 * MiB, 4 * KiB), { hole: false, length: 4 * KiB })

    const data = findAllocation(fd, 1 * MiB, SIZE)
    assert.equal(data?.hole, false)
    assert.ok(data.length >= 4 * KiB && data.length <= 64 * KiB, `data run at 1 MiB is ${data.length}`)

    // The trailing hole runs to EOF; past EOF is a hole too.
    const tail = 1 * MiB + 64 * KiB
    assert.deepEqual(findAllocation(fd, tail, SIZE - tail), { hole: true, length: SIZE - tail })
    assert.deepEqual(findAllocation(fd, tail, SIZE), { hole: true, length: SIZE })
    assert.deepEqual(findAllocation(fd, SIZE, 512), { hole: true, length: 512 })
    assert.deepEqual(findAllocation(fd, SIZE + MiB, 512), { hole: true, length: 512 })
  } finally {
    closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  }
})

test('findAllocation rejects bad arguments', () => {
  assert.throws(() => findAllocation(0, -1, 512), RangeError)
  assert.throws(() => findAllocation(0, 0, 0.5), RangeError)
})
