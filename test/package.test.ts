import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '../..')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : []
  })
}

test('the core imports no Node API, so it runs in a browser', () => {
  const core = ['binary', 'format', 'qcow2', 'nbd', 'portable', 'web'].flatMap((d) => files(join(root, 'src', d)))
    .concat(['raw.ts', 'codecs.ts', 'errors.ts', 'core.ts', 'browser.ts', 'io/blob.ts', 'io/http.ts', 'io/http-request.ts'].map((f) => join(root, 'src', f)))
  for (const file of core) {
    const text = readFileSync(file, 'utf8')
    assert.doesNotMatch(text, /from 'node:|require\(/, `${file} must not import node:*`)
  }
})

test('source files stay short (one purpose each)', () => {
  for (const file of files(join(root, 'src'))) {
    const lines = readFileSync(file, 'utf8').split('\n').length
    assert.ok(lines <= 450, `${file} has ${lines} lines`)
  }
})

test('devDependencies are pinned exactly and the CLI is declared', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  for (const [name, version] of Object.entries(pkg.devDependencies as Record<string, string>)) assert.match(version, /^\d+\.\d+\.\d+$/, name)
  assert.deepEqual(pkg.bin, { qimg: 'bin/qimg.js' })
})

test('exports: a browser entry, a Node entry and a default, each with its types', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const dot = pkg.exports['.']
  assert.deepEqual(Object.keys(dot), ['browser', 'node', 'default'])
  assert.equal(dot.browser.default, './dist/src/browser.js')
  assert.equal(dot.node.default, './dist/src/index.js')
  for (const condition of Object.values(dot) as { types: string }[]) assert.match(condition.types, /\.d\.ts$/)
  assert.ok(!('zstd-napi' in pkg.dependencies), 'zstd-napi is optional (a compiler may be missing)')
  assert.ok('zstd-napi' in pkg.optionalDependencies)
})
