// Bundles the inspector page (src/web: the page, its worker and the library's browser entry)
// into dist/web/ — index.html, app.js, worker.js, zstd.wasm — the static files `qimg web` serves
// and that work from any static host. esbuild bundles for the browser platform, so a Node
// builtin reached from the page fails the build. Without esbuild nothing is built, and `qimg web`
// says the page is not built.
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const outdir = join(root, 'dist', 'web')
rmSync(outdir, { recursive: true, force: true })
let build
try {
  ;({ build } = await import('esbuild'))
} catch {
  console.warn('qimg: esbuild is not installed; the inspector page (qimg web) is not built')
  process.exit(0)
}
await build({
  absWorkingDir: root, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'warning',
  entryPoints: { app: 'src/web/app.ts', worker: 'src/web/worker.ts' }, outdir,
})
mkdirSync(outdir, { recursive: true })
copyFileSync(join(root, 'src/web/index.html'), join(outdir, 'index.html'))
// The worker finds the zstd decoder beside itself (setZstdWasm in src/web/worker.ts).
copyFileSync(join(root, 'node_modules/@bokuweb/zstd-wasm/dist/web/zstd.wasm'), join(outdir, 'zstd.wasm'))
