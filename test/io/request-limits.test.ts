// How zero writes and discards are split by a node's limits, as block/io.c splits them (the
// figures are iotest 204's).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { discardPieces, writeZeroesPieces, type RequestLimits } from '../../src/io/request-limits.js'

const M = 1024 * 1024
const limits: RequestLimits = { requestAlignment: 512, maxTransfer: 0, writeZeroesAlignment: 15 * M, maxWriteZeroes: 15 * M, discardAlignment: 15 * M, maxDiscard: 15 * M }

describe('request limits', () => {
  it('a zero write: a small head up to the preferred alignment, aligned pieces, a small tail', () => {
    assert.deepEqual(writeZeroesPieces(32 * M, 32 * M, limits), [
      { offset: 32 * M, length: 13 * M, small: true },
      { offset: 45 * M, length: 15 * M, small: false },
      { offset: 60 * M, length: 4 * M, small: true },
    ])
  })

  it('a zero write head is bounded by max-transfer', () => {
    const pieces = writeZeroesPieces(1 * M, 20 * M, { ...limits, maxTransfer: 64 * 1024 })
    assert.deepEqual(pieces[0], { offset: M, length: 64 * 1024, small: true })
    assert.equal(pieces.reduce((n, p) => n + p.length, 0), 20 * M)
    assert.ok(pieces.every((p) => p.length <= 15 * M))
  })

  it('a discard: request-aligned pieces up to the boundaries, less than request_alignment left over', () => {
    const pieces = discardPieces(80000001, 30 * M, limits)
    assert.deepEqual(pieces, [
      { offset: 80000001, length: 511, small: true },
      { offset: 80000512, length: 90 * M - 80000512, small: false },
      { offset: 90 * M, length: 15 * M, small: false },
      { offset: 105 * M, length: 1356800, small: false },
      { offset: 105 * M + 1356800, length: 1, small: true },
    ])
  })

  it('no limits: one piece each', () => {
    const none: RequestLimits = { requestAlignment: 1, maxTransfer: 0, writeZeroesAlignment: 0, maxWriteZeroes: 0, discardAlignment: 0, maxDiscard: 0 }
    assert.deepEqual(writeZeroesPieces(3, 1000, none), [{ offset: 3, length: 1000, small: false }])
    assert.deepEqual(discardPieces(3, 1000, none), [{ offset: 3, length: 1000, small: false }])
  })
})
