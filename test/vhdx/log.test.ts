// The VHDX log against QEMU: qimg writes a block; the file as a crash right after the log entry
// was flushed (before the BAT was written in place) leaves it is an image with a dirty log.
// qemu-img refuses it read-only with its message, qemu-img check -r all replays qimg's log and
// reads the block qimg wrote; qimg does the same with QEMU's words. Hostile logs (bad checksum,
// bad sequence numbers, a bad descriptor) are typed errors or ignored as QEMU ignores them.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { isImageError } from '../../src/errors.js'
import { memoryHost } from '../helpers/memory-host.js'
import { needTools, run, runOk, tempDir, qimgInProcess as qimg } from '../helpers/oracle.js'
import { JournalStorage, replay } from '../crash/journal.js'
import { MiB } from './vhdx-helpers.js'

const dir = tempDir('qimg-vhdx-log-')
after(() => dir.cleanup())

/** A 8 MiB dynamic image qimg made, with a block written, cut right after its log entry was flushed. */
async function dirtyImage(name: string): Promise<{ path: string; bytes: Uint8Array }> {
  const path = dir.file(name)
  assert.equal((await qimg(['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', path, '8M'])).code, 0)
  const initial = new Uint8Array(readFileSync(path))
  const storage = new JournalStorage(initial, 'img')
  const device = await openChain(storage as unknown as MemoryStorage, { format: 'vhdx', writable: true, host: memoryHost({}) })
  await device.write(3 * MiB, new Uint8Array(MiB).fill(0x5c))
  await device.flush()
  const journal = storage.journal
  const entry = journal.findIndex((c) => c.kind === 'write' && c.offset === MiB && String.fromCharCode(...c.bytes.subarray(0, 4)) === 'loge')
  assert.ok(entry > 0, 'no log entry written')
  assert.equal(journal[entry + 1]!.kind, 'flush')
  const bytes = await replay(initial, journal, 0, entry + 2, () => true)
  writeFileSync(path, bytes)
  return { path, bytes }
}

describe('vhdx log', () => {
  it('a dirty log qimg wrote: refused read-only, replayed by qemu-img check -r all and by qimg', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const { path, bytes } = await dirtyImage('dirty.vhdx')
    // Before the replay the block is not in the BAT.
    const theirs = await run('qemu-img', ['info', path])
    assert.equal(theirs.code, 1)
    assert.match(theirs.stderr, /opened read-only, but contains a log that needs to be replayed/)
    const mine = await qimg(['info', path])
    assert.equal(mine.code, 1)
    assert.match(mine.stderr, /log must be replayed/)
    const copy = dir.file('dirty-copy.vhdx')
    writeFileSync(copy, bytes)
    const q = await run('qemu-img', ['check', '-r', 'all', path])
    const o = await qimg(['check', '-r', 'all', copy])
    assert.equal(q.code, 0, q.stdout + q.stderr)
    assert.match(q.stdout, /1 corruptions/)
    assert.equal(o.code, q.code)
    assert.equal(o.stdout, q.stdout)
    for (const file of [path, copy]) {
      await runOk('qemu-io', ['-r', '-f', 'vhdx', '-c', `read -P 0x5c ${3 * MiB} ${MiB}`, '-c', `read -P 0 0 ${3 * MiB}`, file])
      assert.equal(await runOk('qemu-img', ['check', file]), 'No errors were found on the image.\n')
    }
    // The writable open replays too (qemu-io opening it read-write).
    const again = dir.file('dirty-rw.vhdx')
    writeFileSync(again, bytes)
    await runOk('qemu-io', ['-f', 'vhdx', '-c', `read -P 0x5c ${3 * MiB} ${MiB}`, again])
  })

  it('hostile logs: a bad checksum is no entry; a bad descriptor fails the open', async () => {
    const { bytes } = await dirtyImage('hostile.vhdx')
    const open = (b: Uint8Array) => openChain(new MemoryStorage(b.slice(), 'img'), { format: 'vhdx', writable: true, host: memoryHost({}) })
    // A flipped data byte: the checksum fails, so there is nothing to replay and the block stays unwritten.
    const badSum = bytes.slice()
    badSum[MiB + 4096 + 100]! ^= 1
    const d1 = await open(badSum)
    assert.deepEqual([...new Set(await d1.read(3 * MiB, MiB))], [0])
    await d1.close()
    // A descriptor with another sequence number: QEMU's open fails (EINVAL).
    const badDesc = bytes.slice()
    badDesc[MiB + 64 + 24]! ^= 1
    await assert.rejects(open(badDesc), (e) => isImageError(e, 'CORRUPT') && /descriptor 0/.test(e.message))
    // Read-only: a typed error naming the log.
    await assert.rejects(openChain(new MemoryStorage(bytes.slice(), 'img'), { format: 'vhdx', writable: false, host: memoryHost({}) }), (e) => isImageError(e, 'READ_ONLY') && /log/.test(e.message))
  })
})
