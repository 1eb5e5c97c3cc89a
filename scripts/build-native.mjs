// Builds the optional native addons with node-gyp:
//   native/build/Release/qimg_seek.node       lseek SEEK_DATA/SEEK_HOLE (holes of sparse files), fallocate
//   native/zlib/build/Release/qimg_zlib.node  raw deflate with the system zlib (QEMU's streams)
// Both are optional: qimg falls back without them, so this script prints one line per addon
// saying what happened and always exits 0, whatever goes wrong.
//   QIMG_SKIP_NATIVE=1      skip the build
//   QIMG_NATIVE_VERBOSE=1   show node-gyp's output
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ADDONS = [
  { dir: fileURLToPath(new URL('../native/', import.meta.url)), name: 'qimg_seek', without: 'sparse-file holes will not be reported' },
  { dir: fileURLToPath(new URL('../native/zlib/', import.meta.url)), name: 'qimg_zlib', without: "compression uses Node's zlib (streams slightly larger than qemu-img's)" },
]
const verbose = Boolean(process.env.QIMG_NATIVE_VERBOSE)

/** Thrown to end one addon's build with a message. */
class Done extends Error {}
function done(message) {
  throw new Done(message)
}

/** The command (and leading arguments) that runs node-gyp, or undefined. */
function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm]
  const bundled = path.join(path.dirname(process.execPath),
    process.platform === 'win32' ? 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'
      : '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')
  if (existsSync(bundled)) return [process.execPath, bundled]
  const probe = spawnSync('node-gyp', ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' })
  if (probe.status === 0) return ['node-gyp']
  return undefined
}

/** Local Node headers, so node-gyp need not download them (there may be no network). */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return []  // node-gyp reads it from the environment
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  if (process.platform !== 'win32' && existsSync(path.join(prefix, 'include/node/node_api.h'))) {
    return [`--nodedir=${prefix}`]
  }
  return []
}

function lastLine(text) {
  const lines = String(text ?? '').split('\n').map((l) => l.trim()).filter(Boolean)
  const err = lines.filter((l) => /error/i.test(l))
  return (err.at(-1) ?? lines.at(-1) ?? '').slice(0, 200)
}

function build({ dir, name, without }) {
  const addon = path.join(dir, 'build', 'Release', `${name}.node`)
  if (process.env.QIMG_SKIP_NATIVE) done(`optional native addon ${name} not built (QIMG_SKIP_NATIVE is set)`)
  if (process.platform === 'win32') done(`optional native addon ${name} not built (not needed on Windows)`)
  if (!existsSync(path.join(dir, 'binding.gyp'))) done(`optional native addon ${name} not built (no binding.gyp)`)
  const gyp = findNodeGyp()
  if (!gyp) done(`optional native addon ${name} not built (node-gyp not found); ${without}`)
  const [cmd, ...pre] = gyp
  const started = Date.now()
  const run = spawnSync(cmd, [...pre, 'rebuild', ...nodedirArgs()], {
    cwd: dir,
    stdio: verbose ? 'inherit' : 'pipe',
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, npm_config_yes: 'true' },
  })
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  if (run.error || run.status !== 0) {
    const why = run.error ? run.error.message : lastLine(`${run.stdout ?? ''}\n${run.stderr ?? ''}`) || `exit ${run.status}`
    done(`optional native addon ${name} not built (node-gyp failed: ${why}); ${without}`)
  }
  const loaded = createRequire(import.meta.url)(addon) // make sure it loads in this Node
  if (Object.keys(loaded).length === 0) done(`optional native addon ${name} built but found nothing to use; ${without}`)
  done(`optional native addon ${name} built in ${seconds}s (${path.relative(fileURLToPath(new URL('..', import.meta.url)), addon)})`)
}

for (const addon of ADDONS) {
  try {
    build(addon)
  } catch (err) {
    console.log(`qimg: ${err instanceof Done ? err.message : `optional native addon ${addon.name} not built (${err instanceof Error ? err.message : String(err)})`}`)
  }
}
