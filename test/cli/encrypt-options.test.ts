import { test } from 'node:test'
import assert from 'node:assert/strict'
import { toEncryptOptions } from '../../src/cli/encrypt-options.js'
import { isImageError } from '../../src/errors.js'

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
