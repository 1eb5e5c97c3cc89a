// CopiedFlags: the COPIED state of active data entries gathered while counting, checked against
// stored refcounts. Any disagreement, or anything it could not record, sends check to its full
// OFLAG_COPIED pass.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CopiedFlags } from '../../src/qcow2/check-refs.js'

test('COPIED must go with refcount 1 and only with it', () => {
  const flags = new CopiedFlags(100)
  flags.record(3, true)
  flags.record(70, false)
  flags.compare(3, 1)
  flags.compare(70, 2)
  flags.compare(50, 0) // named by no entry
  assert.equal(flags.mismatch, false)
  flags.compare(70, 1) // own cluster without COPIED
  assert.equal(flags.mismatch, true)
  const other = new CopiedFlags(100)
  other.record(99, true)
  other.compare(99, 3) // shared cluster with COPIED
  assert.equal(other.mismatch, true)
})

test('a cluster named twice with both states always disagrees with its refcount', () => {
  const flags = new CopiedFlags(64)
  flags.record(33, true)
  flags.record(33, false)
  for (const refcount of [0, 1, 2]) {
    const copy = new CopiedFlags(64)
    copy.record(33, true)
    copy.record(33, false)
    copy.compare(33, refcount)
    assert.equal(copy.mismatch, true, `refcount ${refcount}`)
  }
})

test('entries it cannot place make the full pass run', () => {
  for (const k of [100, 2.5, -1, Number.NaN]) {
    const flags = new CopiedFlags(100)
    flags.record(k, true)
    assert.equal(flags.unknown, true, `cluster ${k}`)
  }
})
