#!/usr/bin/env node
// The qimg command line. A CommonJS file (bin/package.json) so that start-up needs no ES module
// loader: it runs dist/bundle/qimg.cjs (scripts/bundle.mjs: the whole CLI in one file, compiled
// from V8's code cache beside it when this Node accepts that cache) when the bundle is at least
// as new as the compiled code in dist/src/cli/main.js, else that compiled code, so a plain `tsc`
// during development is never shadowed by a stale bundle (issue 16). Started through a link
// named qemu-img, qemu-io or qemu-nbd, it answers as that tool.
'use strict'
const { readFileSync, statSync, writeFileSync } = require('node:fs')
const { join } = require('node:path')

const dist = join(__dirname, '..', 'dist')
const bundle = join(dist, 'bundle', 'qimg.cjs')
const compiled = join(dist, 'src', 'cli', 'main.js')
const invokedAs = (process.argv[1] ?? 'qimg').split(/[\\/]/).pop().replace(/\.js$/, '')
const mtime = (file) => statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? -1

/** The bundle's exports, compiled with the code cache when V8 takes it. */
function loadBundle() {
  const { Script } = require('node:vm')
  const { createRequire, wrap } = require('node:module')
  const cacheFile = `${bundle}.cache`
  let cachedData
  try {
    cachedData = readFileSync(cacheFile)
  } catch {
    // no cache yet (or unreadable): compile from source
  }
  const script = new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle, cachedData })
  // scripts/bundle.mjs makes the cache after a run, so functions compiled lazily are in it too.
  if (process.env.QIMG_WRITE_CODE_CACHE === cacheFile) process.on('exit', () => writeFileSync(cacheFile, script.createCachedData()))
  const module = { exports: {} }
  script.runInThisContext().call(module.exports, module.exports, createRequire(bundle), module, bundle, join(dist, 'bundle'))
  return module.exports
}

async function start() {
  const { main } = mtime(bundle) >= mtime(compiled) ? loadBundle() : await import(require('node:url').pathToFileURL(compiled).href)
  process.exitCode = await main(process.argv.slice(2), invokedAs)
}
start()
