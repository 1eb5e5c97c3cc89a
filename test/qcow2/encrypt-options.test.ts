import { test } from 'node:test'
import assert from 'node:assert/strict'
import { toEncryptOptions } from '../../src/qcow2/encrypt-options.js'
import { measureQcow2Request } from '../../src/qcow2/measure.js'
import { measureLuksHeader } from '../../src/crypto/luks-measure.js'
import { lookupSecretUtf8, type SecretRegistry } from '../../src/cli/secrets.js'
import { isImageError } from '../../src/errors.js'

/** The CLI's lookup: the --object secret as UTF-8. */
const lookup = (secrets: SecretRegistry) => (id: string) => lookupSecretUtf8(secrets, id)

const opts = (text: string) => new Map(text.split(',').map((kv) => kv.split('=') as [string, string]))

test('encryption options map onto LUKS create options', () => {
  assert.equal(toEncryptOptions(opts('cluster_size=4096')), undefined)
  assert.equal(toEncryptOptions(opts('encryption=off')), undefined)
  assert.deepEqual(toEncryptOptions(opts('encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=md5,encrypt.hash-alg=sha1,encrypt.iter-time=0x10')), {
    format: 'luks', cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'essiv', ivgenHashAlg: 'md5', hashAlg: 'sha1', iterTime: 16,
  })
  assert.equal(toEncryptOptions(opts('encryption=on,encrypt.key-secret=s'))?.format, 'aes')
})

test('qemu-img messages for bad encryption options', () => {
  const cases: [string, RegExp, string][] = [
    ['encryption=on,encrypt.format=luks', /^'encrypt.format' and its alias 'encryption' can't be used at the same time$/, 'INVALID_ARGUMENT'],
    ['encrypt.cipher-alg=aes-128', /^Parameter 'encrypt.format' is missing$/, 'INVALID_ARGUMENT'],
    ['encrypt.format=foo', /^Parameter 'format' does not accept value 'foo'$/, 'INVALID_ARGUMENT'],
    ['encrypt.format=luks', /^Parameter 'encrypt.key-secret' is required for cipher$/, 'BAD_KEY'],
    ['encrypt.format=aes,encrypt.key-secret=s,encrypt.iter-time=5', /^Parameter 'encrypt.iter-time' is unexpected$/, 'INVALID_ARGUMENT'],
    ['encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-mode=foo', /^Parameter 'cipher-mode' does not accept value 'foo'$/, 'INVALID_ARGUMENT'],
    ['encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=sm4', /^Parameter 'cipher-alg' does not accept value 'sm4'$/, 'INVALID_ARGUMENT'],
    ['encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=abc', /^Parameter 'encrypt.iter-time' expects a number$/, 'INVALID_ARGUMENT'],
  ]
  for (const [text, message, code] of cases) {
    assert.throws(() => toEncryptOptions(opts(text)), (e) => isImageError(e) && e.code === code && message.test(e.message), text)
  }
})

test('measure: the LUKS header length, from the master key length only', () => {
  const secrets = new Map([['s', new TextEncoder().encode('pass')]])
  const header = (text: string) => measureLuksHeader(opts(text), 'encrypt.', lookup(secrets))
  // 4096 bytes of partition header + 8 key slots of key length × 4000 stripes, in 4 KiB steps.
  assert.equal(header('encrypt.format=luks,encrypt.key-secret=s'), 4096 + 8 * 258048)
  assert.equal(header('encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=aes-128'), 4096 + 8 * 131072)
  assert.equal(header('encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=aes-192'), 4096 + 8 * 192512)
  assert.equal(header('encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc'), 4096 + 8 * 65536)
  assert.equal(header('encrypt.format=luks,encrypt.key-secret=s,encrypt.hash-alg=sha512,encrypt.iter-time=0'), header('encrypt.format=luks,encrypt.key-secret=s'))
})

test('measure -O qcow2: LUKS counts, everything else encrypt.* is ignored, not refused', async () => {
  const secrets = new Map([['s', new TextEncoder().encode('pass')]])
  const measure = (text: string) => measureQcow2Request({ options: opts(text), source: { size: 1 << 30 }, lookupSecret: lookup(secrets) })
  const plain = await measure('cluster_size=65536')
  for (const text of ['encrypt.format=aes', 'encryption=on', 'encrypt.format=foo', 'encrypt.format=aes,encrypt.cipher-alg=foo', 'encrypt.key-secret=nosuch']) {
    assert.deepEqual(await measure(text), plain, text)
  }
  const luks = await measure('encrypt.format=luks,encrypt.key-secret=s')
  // The header in whole clusters (qcow2_measure rounds it up).
  assert.equal(luks.required - plain.required, 32 * 65536)
  assert.equal(luks.fullyAllocated - plain.fullyAllocated, 32 * 65536)
})

test('measure: qemu-img messages for LUKS options, in its order', () => {
  const secrets = new Map([['s', new TextEncoder().encode('pass')], ['bad', Uint8Array.of(0xff)]])
  const cases: [string, string, string][] = [
    ['encrypt.format=luks,encrypt.cipher-alg=foo', "Parameter 'cipher-alg' does not accept value 'foo'", 'INVALID_ARGUMENT'],
    ['encrypt.format=luks,encrypt.cipher-alg=3des', "Parameter 'encrypt.key-secret' is required for cipher", 'BAD_KEY'],
    ['encrypt.format=luks,encrypt.key-secret=x,encrypt.cipher-alg=cast5-128', "No secret with id 'x'", 'BAD_KEY'],
    ['encrypt.format=luks,encrypt.key-secret=bad,encrypt.cipher-alg=3des', 'Data from secret bad is not valid UTF-8', 'BAD_KEY'],
    ['encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=des,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha512', "Algorithm 'des' not supported", 'UNSUPPORTED'],
    ['encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=cast5-128', 'Unsupported cipher mode xts', 'UNSUPPORTED'],
    ['encrypt.format=luks,encrypt.key-secret=s,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha512', 'No AES cipher with key size 64 available', 'UNSUPPORTED'],
  ]
  for (const [text, message, code] of cases) {
    assert.throws(() => measureLuksHeader(opts(text), 'encrypt.', lookup(secrets)), (e) => isImageError(e) && e.code === code && e.message === message, text)
  }
})
