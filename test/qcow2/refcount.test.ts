import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getRefcountEntry } from '../../src/qcow2/refcount-read.js'
import { setRefcountEntry } from '../../src/qcow2/refcount.js'

test('refcount entries of every width round-trip without disturbing neighbours', () => {
  for (let order = 0; order <= 6; order++) {
    const bits = 2 ** order
    const view = new DataView(new ArrayBuffer(512))
    const entries = (512 * 8) / bits
    const max = bits >= 53 ? 2 ** 40 : 2 ** bits - 1
    for (let i = 0; i < entries; i++) setRefcountEntry(view, i, order, (i * 7) % (max + 1))
    for (let i = 0; i < entries; i++) assert.equal(getRefcountEntry(view, i, order), (i * 7) % (max + 1), `order ${order} entry ${i}`)
  }
})

test('sub-byte refcounts pack LSB first (spec "Reference count")', () => {
  const view = new DataView(new ArrayBuffer(2))
  setRefcountEntry(view, 0, 0, 1)
  setRefcountEntry(view, 3, 0, 1)
  assert.equal(view.getUint8(0), 0b1001)
  setRefcountEntry(view, 1, 2, 0xa)
  assert.equal(view.getUint8(0), 0xa9)
  setRefcountEntry(view, 4, 1, 3) // 2-bit entry 4: byte 1, bits 0-1
  assert.equal(view.getUint8(1), 0x03)
})
