import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hideSecretData, loadSecrets, lookupSecret, lookupSecretUtf8 } from '../../src/cli/secrets.js'
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

test('the process title hides the data= of every --object, commas and all', () => {
  assert.deepEqual(
    hideSecretData(['convert', '--object', 'secret,id=s,data=hunter2', '--object=secret,data=a,,b,,c,id=t', '-O', 'qcow2', 'data=x.raw', 'out']),
    ['convert', '--object', 'secret,id=s,data=***', '--object=secret,data=***,id=t', '-O', 'qcow2', 'data=x.raw', 'out'],
  )
  assert.deepEqual(hideSecretData(['info', '--object', 'data=zzz,qom-type=secret,id=s', 'x']), ['info', '--object', 'data=***,qom-type=secret,id=s', 'x'])
  assert.equal(hideSecretData(['info', '--object', 'secret,id=s,file=/run/key', 'x']), undefined, 'nothing to hide: the title is left alone')
})

test('qimg with a secret on its command line shows other users no secret in /proc/PID/cmdline', (t) => {
  if (process.platform !== 'linux') {
    t.skip('/proc/PID/cmdline is Linux only')
    return
  }
  const main = new URL('../../src/cli/main.js', import.meta.url).href
  // The child runs qimg's main() (an info that fails: no such file), then prints its own cmdline.
  const dir = mkdtempSync(join(tmpdir(), 'qimg-title-'))
  const script = join(dir, 'child.mjs')
  writeFileSync(script, [
    `import { readFileSync } from 'node:fs'`,
    `const { main } = await import(${JSON.stringify(main)})`,
    `await main(process.argv.slice(2))`,
    `process.stdout.write(readFileSync('/proc/self/cmdline'))`,
  ].join('\n'))
  const child = spawnSync(process.execPath, [script, 'info', '--object', 'secret,id=s,data=TopSecret42', '/nonexistent/x.qcow2'], { encoding: 'utf8' })
  rmSync(dir, { recursive: true, force: true })
  assert.equal(child.status, 0, child.stderr)
  assert.match(child.stderr, /x\.qcow2/, 'the command ran')
  assert.doesNotMatch(child.stdout, /TopSecret42/)
  assert.match(child.stdout, /data=\*\*\*/)
})
