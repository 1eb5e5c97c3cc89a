// Shared slots: views of the size asked for, reused after they are handed back, and a cap on
// what is kept.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SharedSlots, isShared } from '../../src/node/shared-slots.js'

test('a slot is shared memory viewed at the length asked for, rounded up to a power of two inside', () => {
  const slots = new SharedSlots()
  const a = slots.take(30_000)
  assert.equal(a.length, 30_000)
  assert.equal(a.byteOffset, 0)
  assert.equal(a.buffer.byteLength, 32_768)
  assert.ok(isShared(a))
  assert.ok(!isShared(new Uint8Array(8)))
  assert.equal(slots.take(1).buffer.byteLength, 4096, 'the smallest slot')
})

test('a slot handed back is reused for the next request of its size class only', () => {
  const slots = new SharedSlots()
  const a = slots.take(65_536)
  slots.give(a)
  assert.equal(slots.keptBytes, 65_536)
  const b = slots.take(40_000)
  assert.equal(b.buffer, a.buffer, 'same memory again')
  assert.equal(b.length, 40_000)
  assert.equal(slots.keptBytes, 0)
  const c = slots.take(40_000)
  assert.notEqual(c.buffer, a.buffer, 'a slot in use is never handed out twice')
  slots.give(b)
  assert.notEqual(slots.take(100_000).buffer, a.buffer, 'another size class')
})

test('at most 32 MiB of free slots are kept; more are left to the garbage collector', () => {
  const slots = new SharedSlots()
  const taken = Array.from({ length: 20 }, () => slots.take(2 * 1024 * 1024))
  for (const slot of taken) slots.give(slot)
  assert.equal(slots.keptBytes, 32 * 1024 * 1024)
})
