// QEMU's number options (parse_option_number through qemu_strtou64).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseOptionNumber } from '../../src/cli/create-options.js'
import { ImageError } from '../../src/errors.js'

describe('parseOptionNumber', () => {
  it('reads decimal, hexadecimal and octal', () => {
    assert.equal(parseOptionNumber('refcount_bits', '16'), 16)
    assert.equal(parseOptionNumber('refcount_bits', '0x10'), 16)
    assert.equal(parseOptionNumber('refcount_bits', '020'), 16)
    assert.equal(parseOptionNumber('refcount_bits', '0'), 0)
  })

  it('takes a minus sign as strtoull does, kept as the int64 QEMU prints (iotest 112)', () => {
    assert.equal(parseOptionNumber('refcount_bits', '-1'), -1)
    assert.equal(parseOptionNumber('refcount_bits', '-0'), 0)
  })

  it('refuses what is not a number with QEMU\'s message', () => {
    for (const text of ['', 'abc', '1.5', '16k', '--1']) {
      assert.throws(() => parseOptionNumber('refcount_bits', text), (e: unknown) => e instanceof ImageError && e.code === 'INVALID_ARGUMENT' && e.message === "Parameter 'refcount_bits' expects a number", text)
    }
  })
})
