// Where qemu-img's or qemu-io's text says less than qimg's message (no file, offset or rule),
// qimg run under those names prints QEMU 7.2's text (ImageError.qemuText), as qemu-iotests
// compare it: 043 (backing loop), 054 (size limits), 080 (qcow2_do_open's header rules).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { run } from '../../src/cli/main.js'
import { needTools, run as runProgram, tempDir } from '../helpers/oracle.js'

const qemuImg = (args: string[]) => runProgram('qemu-img', args)
import { peek, pokeHeader } from '../helpers/poke.js'
import { plainImage } from '../failure/bases.js'

const dir = tempDir('qimg-qemu-messages-')
after(() => dir.cleanup())

/** Runs the CLI in-process as `program`; resolves to its exit code and stderr. */
async function runAs(program: string, argv: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = ''
  const code = await run(program === 'qemu-io' ? ['io', ...argv] : argv, { out: () => {}, err: (text) => { stderr += text }, program })
  return { code, stderr }
}

/** A plain image with header fields poked. */
function poked(name: string, fields: Partial<Record<Parameters<typeof pokeHeader>[1], number | bigint>>): string {
  const { bytes } = plainImage()
  for (const [field, value] of Object.entries(fields)) pokeHeader(bytes, field as Parameters<typeof pokeHeader>[1], value)
  const path = dir.file(name)
  writeFileSync(path, bytes)
  return path
}

const openCases: { name: string; fields: Partial<Record<Parameters<typeof pokeHeader>[1], number | bigint>>; qimg: string; qemu: string }[] = [
  { name: 'huge header length', fields: { headerLength: 0xffffffff }, qimg: 'header length 4294967295 exceeds cluster size 512', qemu: 'qcow2 header exceeds cluster size' },
  { name: 'backing file offset past 2^53', fields: { backingFileOffset: 0xffffffffffffffffn }, qimg: 'header field out of range (backingFileOffset 0xffffffffffffffff is above 2^53)', qemu: 'Invalid backing file offset' },
  { name: 'huge refcount table', fields: { refcountTableClusters: 0xffffffff }, qimg: 'refcount table of 4294967295 clusters exceeds 8388608 bytes', qemu: 'Reference count table too large' },
  { name: 'misaligned refcount table past 2^53', fields: { refcountTableOffset: 0x1234567890abcdefn }, qimg: 'header field out of range (refcountTableOffset 0x1234567890abcdef is above 2^53)', qemu: 'Reference count table offset invalid' },
  { name: 'huge snapshot count', fields: { snapshotCount: 0xffffffff }, qimg: 'snapshot count 4294967295 exceeds 65536', qemu: 'Snapshot table too large' },
  { name: 'snapshot table past 2^53', fields: { snapshotsOffset: 0xffffffffffff0000n }, qimg: 'header field out of range (snapshotsOffset 0xffffffffffff0000 is above 2^53)', qemu: 'Snapshot table offset invalid' },
  { name: 'huge L1 table', fields: { l1Size: 0xffffffff }, qimg: 'active L1 table of 4294967295 entries exceeds 33554432 bytes', qemu: 'Active L1 table too large' },
  { name: 'L1 table past 2^53', fields: { l1TableOffset: 0x7fffffffffff0000n }, qimg: 'header field out of range (l1TableOffset 0x7fffffffffff0000 is above 2^53)', qemu: 'Could not read L1 table: Input/output error' },
  { name: 'L1 table past INT64_MAX', fields: { l1TableOffset: 0xffffffffffff0000n }, qimg: 'header field out of range (l1TableOffset 0xffffffffffff0000 is above 2^53)', qemu: 'Active L1 table offset invalid' },
  { name: 'empty L1 table', fields: { l1Size: 0 }, qimg: 'L1 table of 0 entries is too small', qemu: 'L1 table is too small' },
  { name: 'extension past the backing file name', fields: { headerLength: 104, backingFileOffset: 108, backingFileSize: 1 }, qimg: 'header extension at 0x68: its 8-byte header runs past 0x6c', qemu: 'Header extension too large' },
]

for (const c of openCases) {
  test(`open, ${c.name}: qimg names the rule, qemu-io says "${c.qemu}"`, async (t) => {
    const path = poked(`${c.name.replace(/\W+/g, '-')}.qcow2`, c.fields)
    const ours = await runAs('qimg', ['io', '-c', 'read 0 512', path])
    assert.equal(ours.code, 1)
    assert.ok(ours.stderr.startsWith(`qimg: can't open device ${path}: ${path}: ${c.qimg}`), ours.stderr)
    const io = await runAs('qemu-io', ['-c', 'read 0 512', path])
    assert.equal(io.stderr, `qemu-io: can't open device ${path}: ${c.qemu}\n`)
    // qemu-io itself is the judge of its text.
    if (needTools(t, 'qemu-io')) assert.equal((await runProgram('qemu-io', ['-c', 'read 0 512', path])).stderr, io.stderr)
  })
}

test('check: a header qcow2_do_open refuses is "Could not open" as qemu-img; qimg names the field', async () => {
  const path = poked('too-big.qcow2', { size: 2n ** 60n })
  const ours = await runAs('qimg', ['check', path])
  assert.equal(ours.stderr, `qimg: Could not open '${path}': ${path}: header field out of range (size 0x1000000000000000 is above 2^53)\n`)
  const img = await runAs('qemu-img', ['check', path])
  assert.equal(img.stderr, `qemu-img: Could not open '${path}': Image is too big\n`)
  assert.equal((await qemuImg(['check', path])).stderr, img.stderr)
})

test('info --backing-chain on a self-referencing image: QEMU\'s infinite loop text as qemu-img', async () => {
  const { bytes } = plainImage()
  const path = dir.file('self.qcow2')
  writeFileSync(path, bytes)
  assert.equal((await runAs('qimg', ['rebase', '-u', '-b', path, '-F', 'qcow2', path])).code, 0)
  const ours = await runAs('qimg', ['info', '--backing-chain', path])
  assert.equal(ours.stderr, `qimg: ${path}: backing file '${path}' forms a loop in the backing chain\n`)
  const img = await runAs('qemu-img', ['info', '--backing-chain', path])
  assert.equal(img.stderr, `qemu-img: Backing file '${path}' creates an infinite loop.\n`)
  assert.equal((await qemuImg(['info', '--backing-chain', path])).stderr, img.stderr)
})

test('create -o size=1048576T: parsed (below 2^64), refused as too large for qcow2', async () => {
  const path = dir.file('huge.qcow2')
  const img = await runAs('qemu-img', ['create', '-f', 'qcow2', '-o', 'size=1048576T', path])
  assert.equal(img.code, 1)
  assert.equal(img.stderr, `qemu-img: ${path}: The image size is too large for file format 'qcow2' (try using a larger cluster size)\n`)
  assert.equal((await qemuImg(['create', '-f', 'qcow2', '-o', 'size=1048576T', path])).stderr, img.stderr)
})

test('check -r all clears an unknown autoclear bit, as qemu-img opening the image writable', async () => {
  const path = poked('autoclear.qcow2', { autoclearFeatures: 1n << 63n })
  assert.equal((await runAs('qemu-img', ['check', '-r', 'all', path])).code, 0)
  assert.equal(peek(readFileSync(path), 88, 8), 0n)
  // qemu-img does the same to the same image.
  const theirs = poked('autoclear-qemu.qcow2', { autoclearFeatures: 1n << 63n })
  assert.equal((await qemuImg(['check', '-r', 'all', theirs])).code, 0)
  assert.equal(peek(readFileSync(theirs), 88, 8), 0n)
})
