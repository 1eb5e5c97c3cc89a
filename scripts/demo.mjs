// npm run demo: builds a small QCOW2 image (without qemu-img), then shows qimg's info, map,
// convert -O raw and compare on it, in a temporary directory that is removed afterwards.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildTinyQcow2 } from './lib/tiny-qcow2.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const qimg = path.join(root, 'bin', 'qimg.js')
if (!existsSync(path.join(root, 'dist', 'src', 'cli', 'main.js'))) {
  console.error('demo: qimg is not built; run `npm run build` first')
  process.exit(1)
}

const MiB = 1024 * 1024
const dir = mkdtempSync(path.join(tmpdir(), 'qimg-demo-'))
let failed = false

/** Prints `$ qimg ARGS`, runs it in the temp dir and prints its output. */
function run(...args) {
  console.log(`$ qimg ${args.join(' ')}`)
  const r = spawnSync(process.execPath, [qimg, ...args], { cwd: dir, encoding: 'utf8' })
  process.stdout.write(r.stdout + r.stderr)
  if (r.status !== 0) {
    console.log(`(exit code ${r.status})`)
    failed = true
  }
  console.log()
}

try {
  // 64 MiB disk: text at 0, 1 MiB and 32 MiB; the cluster at 2 MiB is an explicit zero cluster.
  const text = (s) => Buffer.from(`${s}\n`)
  const image = buildTinyQcow2({
    size: 64 * MiB,
    data: [
      { offset: 0, bytes: text('hello from qimg') },
      { offset: 1 * MiB, bytes: text('hello from qimg, 1 MiB in') },
      { offset: 32 * MiB, bytes: text('hello from qimg, half way') },
    ],
    zeroClusters: [2 * MiB],
  })
  writeFileSync(path.join(dir, 'demo.qcow2'), image)
  console.log(`Built demo.qcow2 (${image.length} bytes, 64 MiB virtual) in ${dir}\n`)

  run('info', 'demo.qcow2')
  run('map', '--output=json', 'demo.qcow2')
  run('convert', '-O', 'raw', 'demo.qcow2', 'demo.raw')
  run('compare', 'demo.qcow2', 'demo.raw')

  // Show that the text landed where it was written.
  const fd = openSync(path.join(dir, 'demo.raw'), 'r')
  for (const offset of [0, 1 * MiB, 32 * MiB]) {
    const buf = Buffer.alloc(32)
    readSync(fd, buf, 0, buf.length, offset)
    console.log(`demo.raw @ ${String(offset).padStart(8)}: ${JSON.stringify(buf.toString('latin1').replace(/\0+$/, ''))}`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
