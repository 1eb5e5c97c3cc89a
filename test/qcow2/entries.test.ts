import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeL1Entry, decodeL2Entry, decodeSubclusterBitmap, encodeL1Entry, encodeL2Entry, type L2Entry } from '../../src/qcow2/entries.js'
import { isImageError } from '../../src/errors.js'

const where = () => 'L2 table at 0x30000 entry 5'

test('L2 entries round-trip for every kind', () => {
  const cases: L2Entry[] = [
    { kind: 'unallocated' },
    { kind: 'zero', hostOffset: undefined },
    { kind: 'zero', hostOffset: 0x50000 },
    { kind: 'normal', hostOffset: 0x50000, copied: true },
    { kind: 'normal', hostOffset: 0x1234_0000_0000, copied: false },
  ]
  for (const entry of cases) {
    const [hi, lo] = encodeL2Entry(entry, 16)
    assert.deepEqual(decodeL2Entry(hi, lo, 16, false, false, where), entry)
  }
})

test('compressed descriptors round-trip at every cluster size', () => {
  for (let bits = 9; bits <= 21; bits++) {
    const entry: L2Entry = { kind: 'compressed', hostOffset: 0x12_3456_7a01, sectorCount: 2 ** (bits - 8) }
    const [hi, lo] = encodeL2Entry(entry, bits)
    assert.deepEqual(decodeL2Entry(hi, lo, bits, false, false, where), entry, `cluster bits ${bits}`)
  }
})

test('compressed descriptor matches the spec layout for 64 KiB clusters', () => {
  // x = 62 - (16 - 8) = 54: offset in bits 0-53, additional sectors in bits 54-61.
  const [hi, lo] = encodeL2Entry({ kind: 'compressed', hostOffset: 0x50200, sectorCount: 3 }, 16)
  assert.equal(hi, (0x4000_0000 | (2 << 22)) >>> 0)
  assert.equal(lo, 0x50200)
})

test('reserved bits and misalignment are CORRUPT with the entry named', () => {
  assert.throws(() => decodeL2Entry(0x0100_0000, 0, 16, false, false, where), (e) => isImageError(e, 'CORRUPT') && /entry 5: reserved bits set/.test(e.message))
  assert.throws(() => decodeL2Entry(0, 0x50002, 16, false, false, where), (e) => isImageError(e, 'CORRUPT') && /reserved bits/.test(e.message))
  assert.throws(() => decodeL2Entry(0, 0x50200, 16, false, false, where), (e) => isImageError(e, 'CORRUPT') && /0x50200 is not cluster aligned/.test(e.message))
  assert.throws(() => decodeL2Entry(0xc000_0000, 0, 16, false, false, where), (e) => isImageError(e, 'CORRUPT') && /COPIED/.test(e.message))
  assert.throws(() => decodeL2Entry(0, 1, 16, true, false, where), (e) => isImageError(e, 'CORRUPT'))
})

test('offset 0 with COPIED is a normal cluster only with an external data file', () => {
  assert.deepEqual(decodeL2Entry(0x8000_0000, 0, 16, false, true, where), { kind: 'normal', hostOffset: 0, copied: true })
  assert.deepEqual(decodeL2Entry(0x8000_0000, 0, 16, false, false, where), { kind: 'unallocated' })
})

test('L1 entries round-trip and reject reserved bits', () => {
  const entry = { kind: 'table' as const, hostOffset: 0x7_0000, copied: true }
  const [hi, lo] = encodeL1Entry(entry)
  assert.deepEqual(decodeL1Entry(hi, lo, 65536, () => 'L1 entry 0'), entry)
  assert.throws(() => decodeL1Entry(0x0200_0000, 0x70000, 65536, () => 'L1 entry 0'), (e) => isImageError(e, 'CORRUPT') && /L1 entry 0: reserved/.test(e.message))
})

test('subcluster bitmaps reject impossible states', () => {
  const normal: L2Entry = { kind: 'normal', hostOffset: 0x10000, copied: true }
  assert.deepEqual(decodeSubclusterBitmap(0x0000_0002, 0x0000_0001, normal, where), { allocated: 1, zero: 2 })
  assert.throws(() => decodeSubclusterBitmap(1, 1, normal, where), (e) => isImageError(e, 'CORRUPT'))
  assert.throws(() => decodeSubclusterBitmap(0, 1, { kind: 'unallocated' }, where), (e) => isImageError(e, 'CORRUPT'))
})
