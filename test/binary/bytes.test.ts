import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getU64, isZero, setU64 } from '../../src/binary/bytes.js'
import { struct } from '../../src/binary/struct.js'
import { isImageError } from '../../src/errors.js'

test('u64 helpers round-trip safe integers and refuse values above 2^53', () => {
  const view = new DataView(new ArrayBuffer(8))
  for (const v of [0, 1, 0xffff_ffff, 2 ** 32, 2 ** 53 - 1]) {
    setU64(view, 0, v)
    assert.equal(getU64(view, 0), v)
  }
  view.setUint32(0, 0x20_0000)
  assert.throws(() => getU64(view, 0, 'L1 offset'), (e) => isImageError(e, 'OUT_OF_RANGE') && /L1 offset 0x200000/.test(e.message))
})

test('isZero handles unaligned views and tails', () => {
  const bytes = new Uint8Array(37)
  assert.equal(isZero(bytes.subarray(1)), true)
  bytes[36] = 1
  assert.equal(isZero(bytes.subarray(1)), false)
  assert.equal(isZero(bytes.subarray(1, 36)), true)
})

test('struct tables decode and encode the same bytes', () => {
  const s = struct({ a: [0, 'u8'], b: [1, 'u16'], c: [4, 'u32'], d: [8, 'u64'] })
  assert.equal(s.size, 16)
  const view = new DataView(new ArrayBuffer(16))
  s.encode(view, { a: 1, b: 0x203, c: 0x4050607, d: 2 ** 40 + 5 })
  assert.equal(Buffer.from(view.buffer).toString('hex'), '010203000405060700000100' + '00000005')
  assert.deepEqual(s.decode(view), { a: 1, b: 0x203, c: 0x4050607, d: 2 ** 40 + 5 })
})
