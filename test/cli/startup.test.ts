// Start-up (issue 16): bin/qimg.js runs the bundle (one CommonJS file compiled from V8's code
// cache, no ES module loader) and a command loads only the Node builtins it uses. Structure,
// not timing: what a run loaded is read from process.moduleLoadList.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'
import { QIMG } from '../helpers/oracle.js'

const root = resolve(import.meta.dirname, '../../..')
const bundle = join(root, 'dist', 'bundle', 'qimg.cjs')
const dir = mkdtempSync(join(tmpdir(), 'qimg-startup-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** The builtins and files a qimg run loaded, from a preloaded hook that writes them at exit. */
function loaded(args: string[]): { builtins: string[]; esmLoader: boolean; code: string } {
  const hook = join(dir, 'hook.cjs')
  const out = join(dir, 'loaded.json')
  writeFileSync(hook, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.moduleLoadList)))\n`)
  execFileSync(process.execPath, ['--require', hook, QIMG, ...args], { stdio: 'ignore' })
  const list = JSON.parse(readFileSync(out, 'utf8')) as string[]
  const builtins = list.filter((entry) => entry.startsWith('NativeModule ')).map((entry) => entry.slice('NativeModule '.length))
  return { builtins, esmLoader: builtins.includes('internal/modules/esm/translators'), code: list.join('\n') }
}

describe('start-up', () => {
  const hasBundle = existsSync(bundle)

  it('the bundle is built by npm test and npm ci (scripts/bundle.mjs) and its code cache accepted', async (t) => {
    if (!hasBundle && !process.env.CI) return t.skip('no dist/bundle (esbuild not installed): the CLI runs unbundled')
    assert.ok(hasBundle, 'dist/bundle/qimg.cjs exists')
    const { Script } = await import('node:vm')
    const { default: { wrap } } = await import('node:module')
    const script = new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle, cachedData: readFileSync(`${bundle}.cache`) })
    assert.equal(script.cachedDataRejected, false)
  })

  it('info of a plain qcow2 loads no crypto, zlib, worker threads, network or ES module loader', (t) => {
    if (!hasBundle && !process.env.CI) return t.skip('no dist/bundle (esbuild not installed)')
    const image = join(dir, 'plain.qcow2')
    execFileSync(process.execPath, [QIMG, 'create', '-q', '-f', 'qcow2', image, '1G'])
    const run = loaded(['info', image])
    for (const name of ['crypto', 'zlib', 'worker_threads', 'net', 'tls', 'child_process']) {
      assert.ok(!run.builtins.includes(name), `info loaded node:${name}`)
    }
    assert.equal(run.esmLoader, false, 'the ES module loader was started')
  })

  it('the builtins a command needs still load when it needs them', (t) => {
    if (!hasBundle && !process.env.CI) return t.skip('no dist/bundle (esbuild not installed)')
    const raw = join(dir, 'text.raw')
    writeFileSync(raw, Buffer.alloc(1 << 20, 'qimg start-up '))
    const run = loaded(['convert', '-c', '-O', 'qcow2', raw, join(dir, 'text.qcow2')])
    assert.ok(run.builtins.includes('zlib') || run.builtins.includes('worker_threads'), 'compression ran somewhere')
    assert.equal(execFileSync(process.execPath, [QIMG, 'compare', raw, join(dir, 'text.qcow2')]).toString(), 'Images are identical.\n')
  })
})
