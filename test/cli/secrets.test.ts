import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadSecrets, lookupSecret, lookupSecretUtf8 } from '../../src/cli/secrets.js'
import { isImageError } from '../../src/errors.js'

const text = (b: Uint8Array) => Buffer.from(b).toString()

test('secrets come from data=, file= and base64, by id', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qimg-secrets-'))
  try {
    writeFileSync(join(dir, 'pass'), 'from a file\n')
    const secrets = await loadSecrets([
      'secret,id=a,data=abc',
      `secret,id=b,file=${join(dir, 'pass')}`,
      'secret,id=c,data=aGVsbG8=,format=base64',
      'secret,id=d,data=x,,y', // ",," is a literal comma
    ])
    assert.equal(text(lookupSecret(secrets, 'a')), 'abc')
    assert.equal(text(lookupSecret(secrets, 'b')), 'from a file\n') // as QEMU: the whole file
    assert.equal(text(lookupSecret(secrets, 'c')), 'hello')
    assert.equal(text(lookupSecret(secrets, 'd')), 'x,y')
    assert.throws(() => lookupSecret(secrets, 'e'), (e) => isImageError(e, 'BAD_KEY') && e.message === "No secret with id 'e'")
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('bad --object values get QEMU messages and never echo secret data', async () => {
  const cases: [string[], RegExp][] = [
    [['secret,id=s'], /^Either 'file' or 'data' must be provided$/],
    [['secret,data=TOPSECRET'], /^Parameter 'id' is missing$/],
    [['secret,id=s,data=TOPSECRET,file=/x'], /^'file' and 'data' are mutually exclusive$/],
    [['secret,id=s,data=TOPSECRET', 'secret,id=s,data=TOPSECRET2'], /^attempt to add duplicate property 's' to object \(type 'container'\)$/],
    [['secret,id=s,data=TOPSECRET,bogus=1'], /^Parameter 'bogus' is unexpected$/],
    [['memory-backend-ram,id=m,size=1M'], /^Invalid object type 'memory-backend-ram'/],
    [['secret,id=s,data=TOPSECRET,PARTOFSECRET'], /values are not shown/],
    [['secret,id=s,data=TOP%SECRET,format=base64'], /not valid base64/],
    [['secret,id=s,data=TOPSECRET,keyid=k,iv=x'], /keyid= are not supported/],
  ]
  for (const [values, message] of cases) {
    await assert.rejects(loadSecrets(values), (e) => {
      assert.ok(isImageError(e), String(e))
      assert.match(e.message, message)
      assert.doesNotMatch(e.message, /SECRET/)
      return true
    })
  }
})

test('a passphrase secret must be UTF-8 without NUL bytes (qcrypto_secret_lookup_as_utf8)', () => {
  const secrets = new Map([['ok', new TextEncoder().encode('p\u00e4ss \u2713')], ['ff', Uint8Array.of(0xff)], ['nul', Uint8Array.of(0x61, 0)]])
  assert.equal(text(lookupSecretUtf8(secrets, 'ok')), 'p\u00e4ss \u2713')
  for (const id of ['ff', 'nul']) {
    assert.throws(() => lookupSecretUtf8(secrets, id), (e) => isImageError(e, 'BAD_KEY') && e.message === `Data from secret ${id} is not valid UTF-8`)
  }
  assert.throws(() => lookupSecretUtf8(secrets, 'x'), (e) => isImageError(e, 'BAD_KEY') && e.message === "No secret with id 'x'")
})
