import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getopt } from '../../src/cli/getopt.js'
import { parseOptionString } from '../../src/cli/image-opts.js'
import { cvtnum, parseSize, strtosz } from '../../src/cli/size.js'
import { isImageError } from '../../src/errors.js'

test('sizes take qemu-img suffixes in powers of 1024', () => {
  assert.equal(parseSize('512'), 512)
  assert.equal(parseSize('1k'), 1024)
  assert.equal(parseSize('1K'), 1024)
  assert.equal(parseSize('1.5M'), 1.5 * 2 ** 20)
  assert.equal(parseSize('10G'), 10 * 2 ** 30)
  assert.equal(parseSize('2T'), 2 * 2 ** 40)
  assert.throws(() => parseSize('1Q'), (e) => isImageError(e, 'INVALID_ARGUMENT'))
  assert.throws(() => parseSize('1.5'), (e) => isImageError(e, 'INVALID_ARGUMENT'))
})

test('sizes follow qemu_strtosz: zero fractions without a suffix, rounding half up, strtoull ranges', () => {
  assert.equal(parseSize('1024.0'), 1024)
  assert.equal(parseSize('1.'), 1)
  assert.equal(parseSize('0.00049k'), 1)  // 0.50176 bytes: rounded up
  assert.equal(parseSize('0.00048k'), 0)  // 0.49152 bytes: rounded down
  assert.deepEqual(strtosz('1.5e'), { ok: true, value: 3n << 59n })  // 'e' is the exabyte suffix, not an exponent
  assert.deepEqual(strtosz('.5k'), { ok: false, error: 'invalid' })
  assert.deepEqual(strtosz('1.5e3k'), { ok: false, error: 'invalid' })
  assert.deepEqual(strtosz('16E'), { ok: false, error: 'range' })
  assert.deepEqual(strtosz('18446744073709551616'), { ok: false, error: 'range' })
  assert.deepEqual(strtosz('18446744073709551616k'), { ok: false, error: 'invalid' })
  assert.throws(() => cvtnum('image size', '8E'), (e) => isImageError(e, 'INVALID_ARGUMENT') && e.message === 'Invalid image size specified. Must be between 0 and 9223372036854775807.')
})

test('getopt permutes operands and options, clusters short flags, takes attached values', () => {
  const specs = [{ short: 'f', value: true }, { short: 'p', value: false }, { short: 'q', value: false }, { long: 'output', value: true }]
  const r = getopt(['a.img', '-pq', '-fqcow2', '--output=json', 'b.img', '--', '-c'], specs)
  assert.deepEqual(r.operands, ['a.img', 'b.img', '-c'])
  assert.equal(r.options.get('f'), 'qcow2')
  assert.equal(r.options.get('output'), 'json')
  assert.equal(r.options.get('p'), true)
  assert.throws(() => getopt(['-x'], specs), (e) => isImageError(e, 'INVALID_ARGUMENT') && /invalid option -- 'x'/.test(e.message))
})

test('option strings unescape doubled commas', () => {
  assert.deepEqual([...parseOptionString('driver=qcow2,file.filename=a,,b.qcow2')], [['driver', 'qcow2'], ['file.filename', 'a,b.qcow2']])
})
