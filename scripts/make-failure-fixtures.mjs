// Writes the hand-corrupted images of test/failure/cases.ts to files named by the error they
// must produce ("CORRUPT L1 table unaligned.qcow2"), for looking at them with other tools. The
// tests build the same images in memory, so nothing here is committed. Needs a build (npm run build).
//   node scripts/make-failure-fixtures.mjs [OUTDIR]   (default dist/failure-fixtures)
//   --qemu   also run qemu-img on each image and print its verdict next to qimg's
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const args = process.argv.slice(2)
const withQemu = args.includes('--qemu')
const outDir = path.resolve(args.find((a) => !a.startsWith('--')) ?? path.join(root, 'dist', 'failure-fixtures'))

let CASES
try {
  ;({ CASES } = await import(path.join(root, 'dist', 'test', 'failure', 'cases.js')))
} catch (e) {
  console.error(`make-failure-fixtures: build first (npm run build): ${e.message}`)
  process.exit(1)
}

/** First line of qemu-img's verdict on `file` for the step the case fails at. */
function qemuVerdict(file, step, snapshot) {
  const argv = step === 'read'
    ? ['convert', '-f', 'qcow2', ...(snapshot ? ['-l', `snapshot.name=${snapshot}`] : []), '-O', 'raw', file, path.join(outDir, '.out.raw')]
    : ['info', '-f', 'qcow2', file]
  const r = spawnSync('qemu-img', argv, { encoding: 'utf8' })
  if (r.error) return `(qemu-img not run: ${r.error.message})`
  return r.status === 0 ? 'accepted' : `exit ${r.status}: ${(r.stderr.split('\n')[0] ?? '').replace(/^qemu-img: /, '')}`
}

mkdirSync(outDir, { recursive: true })
for (const c of CASES) {
  const { bytes } = c.make()
  const name = `${c.code} ${c.name}.qcow2`.replace(/[/\\]/g, '_')
  const file = path.join(outDir, name)
  writeFileSync(file, bytes)
  console.log(withQemu ? `${name}\n    qemu-img: ${qemuVerdict(file, c.step, c.snapshot)}` : name)
}
console.log(`make-failure-fixtures: ${CASES.length} images in ${outDir}`)
