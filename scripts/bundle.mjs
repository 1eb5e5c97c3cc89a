// Bundles the compiled CLI (dist/src/cli/main.js) into dist/bundle/qimg.cjs, one CommonJS file
// that bin/qimg.js compiles from a V8 code cache, and the worker it starts into
// dist/bundle/pool-worker.js: a few files instead of ~300 ES modules (issue 16: start-up).
// Commands stay lazy: each dynamic import becomes a module initialised only when it runs. Run
// after tsc; bin/qimg.js uses the bundle only when it is at least as new as the compiled code.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const outdir = join(root, 'dist', 'bundle')
rmSync(outdir, { recursive: true, force: true })
let build
try {
  ;({ build } = await import('esbuild'))
} catch {
  // An install without devDependencies: bin/qimg.js runs the compiled code instead.
  console.warn('qimg: esbuild is not installed; the CLI runs unbundled (slower start-up)')
  process.exit(0)
}
// @bokuweb/zstd-wasm stays a package of its own: it reads zstd.wasm from beside its own files.
const common = { absWorkingDir: root, bundle: true, platform: 'node', target: 'node20', logLevel: 'warning', external: ['@bokuweb/zstd-wasm'] }
await build({
  ...common,
  entryPoints: ['dist/src/cli/main.js'],
  outfile: join(outdir, 'qimg.cjs'),
  format: 'cjs',
  // import.meta.url of every module becomes the bundle's own URL: the worker, the native addons
  // and zstd-napi are found from there (dist/bundle/ is as deep as dist/src/).
  define: { 'import.meta.url': 'importMetaUrl' },
  banner: { js: 'const importMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
})
// The worker is found beside the code that starts it (new URL('./pool-worker.js', import.meta.url)).
await build({ ...common, entryPoints: ['dist/src/node/pool-worker.js'], outfile: join(outdir, 'pool-worker.js'), format: 'esm' })

// The inspector page (qimg web): dist/web/.
await import('./bundle-web.mjs')

// The code cache: made at the exit of a real run (create, then info of that image; the last run's
// cache is kept), so the functions info compiles lazily are cached as well. A cache another Node
// rejects costs nothing.
const scratch = mkdtempSync(join(tmpdir(), 'qimg-bundle-'))
try {
  const bin = join(root, 'bin', 'qimg.js')
  const image = join(scratch, 'warm.qcow2')
  const env = { ...process.env, QIMG_WRITE_CODE_CACHE: join(outdir, 'qimg.cjs.cache') }
  for (const args of [['create', '-q', '-f', 'qcow2', image, '64M'], ['info', image]]) {
    const run = spawnSync(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] })
    if (run.status !== 0) throw new Error(`bundle warm-up failed: qimg ${args.join(' ')} exited ${run.status}`)
  }
} finally {
  rmSync(scratch, { recursive: true, force: true })
}
