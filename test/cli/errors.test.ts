// The CLI on corrupt and missing images: exit code 1, nothing on stdout, and exactly one
// "qimg: …" line on stderr that names the file and the problem (never a stack trace).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { qimg, tempDir } from '../helpers/oracle.js'
import { l2EntryOffset } from '../helpers/build-qcow2.js'
import { peek, poke, pokeHeader, pokeSnapshot } from '../helpers/poke.js'
import { backingBitmapsImage, compressedImage, plainImage, snapshotImage } from '../failure/bases.js'

const dir = tempDir('qimg-cli-errors-')
after(() => dir.cleanup())

const re = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** Writes `bytes` to the temp dir and returns the path. */
function file(name: string, bytes: Uint8Array): string {
  const path = dir.file(name)
  writeFileSync(path, bytes)
  return path
}

/** Runs qimg and asserts exit code 1, empty stdout and one stderr line matching `line`. */
async function fails(args: string[], line: RegExp): Promise<void> {
  const r = await qimg(args, { cwd: dir.path })
  assert.equal(r.code, 1, `exit code of qimg ${args.join(' ')}; stderr: ${r.stderr}`)
  assert.equal(r.stdout, '')
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /)
  assert.match(r.stderr, /^qimg: [^\n]*\n$/, 'exactly one line on stderr')
  assert.match(r.stderr, line)
}

// L1 table past the end of the file: fails at open.
const l1PastEof = (() => {
  const { bytes } = plainImage()
  pokeHeader(bytes, 'l1TableOffset', bytes.length)
  return bytes
})()

// A reserved bit in an L2 entry: opens, fails when the mapping is read.
const l2Reserved = (() => {
  const img = plainImage()
  const at = l2EntryOffset(img, 0)
  poke(img.bytes, at, 8, peek(img.bytes, at, 8) | 2n)
  return { bytes: img.bytes, table: img.layout.l2Tables.get(0)! }
})()

// A compressed cluster whose data is not deflate: fails when the data is read.
const garbage = (() => {
  const img = compressedImage()
  const c = img.layout.compressed.get(0)!
  img.bytes.fill(0xff, c.hostOffset, c.hostOffset + c.length)
  return { bytes: img.bytes, host: c.hostOffset }
})()

test('info on an image whose L1 table is past the end of the file', async () => {
  const path = file('l1.qcow2', l1PastEof)
  await fails(['info', path], new RegExp(`^qimg: ${re(path)}: active L1 table at 0x1600 \\(2 entries\\) runs past end of file \\(5632 bytes\\)\\n$`))
  await fails(['info', '--output=json', path], /runs past end of file/)
})

test('map on an image with reserved bits in an L2 entry', async () => {
  const path = file('l2.qcow2', l2Reserved.bytes)
  await fails(['map', path], new RegExp(`^qimg: ${re(path)}: L2 table at 0x${l2Reserved.table.toString(16)} entry 0: reserved bits set \\(0x8000000000000[0-9a-f]{3}\\)\\n$`))
  await fails(['map', '--output=json', path], /reserved bits set/)
})

test('convert of an image with a compressed cluster that does not inflate', async () => {
  const path = file('garbage.qcow2', garbage.bytes)
  await fails(['convert', '-O', 'raw', path, dir.file('out.raw')],
    new RegExp(`^qimg: ${re(path)}: compressed cluster at guest 0x0 \\(host 0x${garbage.host.toString(16)}\\): deflate stream is invalid`))
})

test('info -f qcow2 on a file with a bad magic', async () => {
  const { bytes } = plainImage()
  pokeHeader(bytes, 'magic', 0)
  const path = file('magic.qcow2', bytes)
  await fails(['info', '-f', 'qcow2', path], new RegExp(`^qimg: ${re(path)}: not a qcow2 image \\(bad magic 0x0\\)\\n$`))
})

test('a nonexistent file', async () => {
  const path = dir.file('missing.qcow2')
  for (const args of [['info', path], ['map', path], ['convert', '-O', 'raw', path, dir.file('x.raw')]]) {
    await fails(args, new RegExp(`^qimg: Could not open '${re(path)}': No such file or directory\\n$`))
  }
})

test('a json: backing file name is refused when reading and shown, unopened, by info', async () => {
  const name = 'json:{"file":{"driver":"http","url":"http://evil.example/x"}}'
  const path = file('json.qcow2', backingBitmapsImage(name).bytes)
  await fails(['map', path], new RegExp(`^qimg: ${re(path)}: backing file '${re(name)}' is a protocol or json: specification; qimg only opens plain file names\\n$`))
  await fails(['convert', '-O', 'raw', path, dir.file('json.raw')], /is a protocol or json: specification/)
  const r = await qimg(['info', path])
  assert.equal(r.code, 0, r.stderr)
  assert.ok(r.stdout.includes(`backing file: ${name}`))
})

test('a missing backing file names the file', async () => {
  const path = file('orphan.qcow2', backingBitmapsImage('gone.qcow2').bytes)
  await fails(['map', path], new RegExp(`^qimg: Could not open backing file: Could not open '${re(dir.file('gone.qcow2'))}': No such file or directory\\n$`))
})

test('amend compat=0.10 of an image whose snapshot names a huge L1 table: refused before any allocation', async () => {
  // The downgrade reads every snapshot's L1 table; a hostile size once reached a 2^35-byte read.
  const img = snapshotImage()
  pokeSnapshot(img.bytes, img.layout.snapshots[1]!.entryOffset, 'l1Size', 2 ** 32 - 1)
  const path = file('huge-snapshot-l1.qcow2', img.bytes)
  await fails(['amend', '-o', 'compat=0.10', path], new RegExp(`^qimg: ${re(path)}: L1 table of snapshot 2 of 4294967295 entries exceeds 33554432 bytes\\n$`))
})
