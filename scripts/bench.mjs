// npm run bench: qimg against qemu-img on realistic multi-GiB images (a benchmark, not a test).
//
// Builds its images once and caches them in bench-work/ (scripts/bench/images.mjs), then times each
// benchmark below for qimg and qemu-img side by side (scripts/bench/run.mjs): one unmeasured
// warm-up run each, then RUNS measured runs each in alternating order; wall time (median, and
// best), CPU time (user + system, median) and peak RSS (max). Every output is checked (same bytes,
// `qemu-img check` clean, sizes). Wall times swing a lot on a busy or virtualised machine: the load
// average is printed; compare CPU times and best runs too.
// Needs qemu-img, qemu-io, mke2fs (e2fsprogs) and a built qimg (npm run build).
//
//   QIMG_BENCH_RUNS=N        measured runs per tool (default 3)
//   QIMG_BENCH_ONLY=TEXT     only benchmarks whose name contains TEXT (comma: any of several)
//   QIMG_BENCH_SETTLE_MS=MS  pause before every run (default 2000)
// The NBD benchmarks (qimg nbd beside qemu-nbd: fio, nbdcopy) are in scripts/bench/nbd.mjs;
// QIMG_BENCH_ONLY=nbd runs only them.
//   QIMG_BENCH_CACHE=hot|cold|both  page cache state for the convert benchmarks (default hot; cold
//                            drops the caches before every run and needs root)
//
// Sizes (issue 16): `small` (~100 MB of data), `medium` (~0.9 GB), the large disk.raw (~2 GiB), the
// small and medium ones text-heavy and binary (`-bin`); QIMG_BENCH_ONLY=small,startup picks some.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { GiB, LUKS_ITER_TIME_MS, LUKS_SECRET, copySparse, imageCache } from './bench/images.mjs'
import { runNbdBenchmarks } from './bench/nbd.mjs'
import { rssSource, runBenchmark } from './bench/run.mjs'
import { startupBenchmarks } from './bench/startup.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const work = path.join(root, 'bench-work')
const qimgBin = path.join(root, 'bin', 'qimg.js')
const RUNS = Number(process.env.QIMG_BENCH_RUNS ?? 3)
const ONLY = (process.env.QIMG_BENCH_ONLY ?? '').split(',')
const SETTLE_MS = Number(process.env.QIMG_BENCH_SETTLE_MS ?? 2000)
const CACHE = process.env.QIMG_BENCH_CACHE ?? 'hot'
const { image, files } = imageCache(work, root)

// ---------------------------------------------------------------- verdicts ({ ok, text })

const tool = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' })

/** Same bytes in both outputs (cmp stops at the first difference). */
function sameBytes(a, b) {
  const r = tool('cmp', ['-s', a, b])
  return r.status === 0 ? { ok: true, text: 'identical' } : { ok: false, text: `DIFFERENT (cmp exit ${r.status})` }
}

/** qimg's VMDK: `qemu-img check` clean, `qemu-img compare` equal to the source, no larger than qemu-img's (+1 %). */
function vmdkLikeQemu(qimgOut, qemuOut, source) {
  const check = tool('qemu-img', ['check', qimgOut])
  if (check.status !== 0) return { ok: false, text: `qemu-img check: exit ${check.status}: ${check.stdout}${check.stderr}` }
  const compare = tool('qemu-img', ['compare', '-f', 'raw', '-F', 'vmdk', source, qimgOut])
  if (compare.status !== 0) return { ok: false, text: `qemu-img compare: exit ${compare.status}: ${compare.stdout}` }
  const [a, b] = [statSync(qimgOut).size, statSync(qemuOut).size]
  return a <= b * 1.01 ? { ok: true, text: `check clean, same content, ${a} vs ${b} bytes` } : { ok: false, text: `${a} bytes, qemu-img ${b}` }
}

const secretObject = ['--object', `secret,id=sec0,data=${LUKS_SECRET}`]
const luksOptions = `encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=${LUKS_ITER_TIME_MS}`

/**
 * qimg's qcow2 output: `qemu-img check` clean, `qemu-img compare` equal to the raw source, and
 * no larger than qemu-img's output (+1 %).
 */
function qcow2LikeQemu(qimgOut, qemuOut, source, { luks = false, sourceFormat = 'raw' } = {}) {
  const check = tool('qemu-img', luks ? ['check', ...secretObject, '--image-opts', `driver=qcow2,file.filename=${qimgOut},encrypt.key-secret=sec0`] : ['check', qimgOut])
  if (check.status !== 0) return { ok: false, text: `qemu-img check: exit ${check.status}: ${check.stdout}${check.stderr}` }
  const compare = luks
    ? tool('qemu-img', ['compare', ...secretObject, '--image-opts', `driver=qcow2,file.filename=${qimgOut},encrypt.key-secret=sec0`, `driver=raw,file.filename=${source}`])
    : tool('qemu-img', ['compare', '-f', 'qcow2', '-F', sourceFormat, qimgOut, source])
  if (compare.status !== 0) return { ok: false, text: `qemu-img compare with the source: exit ${compare.status}: ${compare.stdout}${compare.stderr}` }
  const ours = statSync(qimgOut).size
  const theirs = statSync(qemuOut).size
  const sizeRatio = ours / theirs
  const text = `check clean, same content as the source; size ${(ours / GiB).toFixed(3)} / ${(theirs / GiB).toFixed(3)} GiB (${((sizeRatio - 1) * 100).toFixed(2)} %)`
  return { ok: sizeRatio <= 1.01, text: sizeRatio <= 1.01 ? text : `LARGER than qemu-img's: ${text}` }
}

/** Both images after a snapshot command: `qemu-img check` clean and the same snapshot names. */
function sameSnapshots(qimgOut, qemuOut) {
  const check = tool('qemu-img', ['check', qimgOut])
  if (check.status !== 0) return { ok: false, text: `qemu-img check: exit ${check.status}: ${check.stdout}` }
  const names = (file) => tool('qemu-img', ['info', '--output=json', file]).stdout && JSON.parse(tool('qemu-img', ['info', '--output=json', file]).stdout).snapshots?.map((s) => s.name).join(',')
  const [ours, theirs] = [names(qimgOut), names(qemuOut)]
  return ours === theirs ? { ok: true, text: `check clean, snapshots ${ours}` } : { ok: false, text: `snapshots differ: ${ours} vs ${theirs}` }
}

const runCompleted = (stdout) => /Run completed in ([\d.]+) seconds/.exec(stdout)?.[1]?.concat(' s') ?? '?'

// ---------------------------------------------------------------- benchmarks

/**
 * One benchmark: `image` is the input (a key of the image cache); qimg / qemu are argument lists
 * for (input, output); prepare(output) runs untimed before each run; verify(qimgOut, qemuOut,
 * input) returns { ok, text }. maxRatio: the target for qimg/qemu-img wall time (null: report
 * only); maxPeakMiB: qimg's peak RSS target.
 */
const same = (args) => ({ qimg: args, qemu: args })
/** The everyday sizes: plain copies ≤ 1.0×, compression ≤ 0.6×, reading compressed ≤ 0.7× (issue 16). */
const sizeTier = (size) => [
  { name: `convert -O raw  ${size}.qcow2`, image: `${size}.qcow2`, ...same((i, o) => ['convert', '-O', 'raw', i, o]), verify: sameBytes, cacheVariants: true },
  { name: `convert -O qcow2  ${size}.raw`, image: size, ...same((i, o) => ['convert', '-f', 'raw', '-O', 'qcow2', i, o]), verify: qcow2LikeQemu, cacheVariants: true },
  { name: `convert -c -O qcow2 (zlib)  ${size}.raw`, image: size, ...same((i, o) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', i, o]), verify: qcow2LikeQemu, maxRatio: 0.6, maxPeakMiB: 512 },
  {
    name: `convert -c -O qcow2 -o compression_type=zstd  ${size}.raw`, image: size,
    ...same((i, o) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', i, o]), verify: qcow2LikeQemu, maxRatio: 0.6, maxPeakMiB: 512,
  },
  { name: `convert -O raw  ${size}-zlib.qcow2`, image: `${size}-zlib.qcow2`, ...same((i, o) => ['convert', '-O', 'raw', i, o]), verify: sameBytes, maxRatio: 0.7 },
  { name: `convert -O raw  ${size}-zstd.qcow2`, image: `${size}-zstd.qcow2`, ...same((i, o) => ['convert', '-O', 'raw', i, o]), verify: sameBytes, maxRatio: 0.7, maxPeakMiB: 512 },
]
const BENCHMARKS = [
  ...sizeTier('small-text'),
  ...sizeTier('small-bin'),
  ...sizeTier('medium'),
  ...sizeTier('medium-bin'),
  { name: 'convert -O raw  plain.qcow2', image: 'plain', ...same((i, o) => ['convert', '-O', 'raw', i, o]), verify: sameBytes },
  { name: 'convert -O raw  zlib.qcow2', image: 'zlib', ...same((i, o) => ['convert', '-O', 'raw', i, o]), verify: sameBytes },
  { name: 'convert -O raw  zstd.qcow2', image: 'zstd', ...same((i, o) => ['convert', '-O', 'raw', i, o]), verify: sameBytes, maxPeakMiB: 512 },
  { name: 'convert -O qcow2  disk.raw', image: 'raw', ...same((i, o) => ['convert', '-f', 'raw', '-O', 'qcow2', i, o]), verify: qcow2LikeQemu },
  { name: 'convert -c -O qcow2 (zlib)  disk.raw', image: 'raw', ...same((i, o) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', i, o]), verify: qcow2LikeQemu, maxRatio: 0.6, maxPeakMiB: 512 },
  {
    name: 'convert -c -O qcow2 -o compression_type=zstd  disk.raw', image: 'raw',
    ...same((i, o) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', i, o]),
    verify: qcow2LikeQemu, maxRatio: 0.6, maxPeakMiB: 512,
  },
  {
    name: 'convert -O qcow2 -o encrypt.format=luks  disk.raw', image: 'raw',
    ...same((i, o) => ['convert', ...secretObject, '-f', 'raw', '-O', 'qcow2', '-o', luksOptions, i, o]),
    verify: (a, b, src) => qcow2LikeQemu(a, b, src, { luks: true }),
  },
  {
    name: 'convert -O raw  luks.qcow2', image: 'luks',
    ...same((i, o) => ['convert', ...secretObject, '--image-opts', `driver=qcow2,file.filename=${i},encrypt.key-secret=sec0`, '-O', 'raw', o]),
    verify: sameBytes,
  },
  { name: 'convert -O qcow2  disk.vdi', image: 'vdi', ...same((i, o) => ['convert', '-f', 'vdi', '-O', 'qcow2', i, o]), verify: (a, b, src) => qcow2LikeQemu(a, b, src, { sourceFormat: 'vdi' }) },
  { name: 'convert -O qcow2  stream.vmdk (streamOptimized)', image: 'stream', ...same((i, o) => ['convert', '-f', 'vmdk', '-O', 'qcow2', i, o]), verify: (a, b, src) => qcow2LikeQemu(a, b, src, { sourceFormat: 'vmdk' }) },
  // streamOptimized grains deflated on the worker pool (qemu-img deflates them one by one).
  { name: 'convert -O vmdk -o subformat=streamOptimized  disk.raw', image: 'raw', ...same((i, o) => ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', i, o]), verify: vmdkLikeQemu, maxRatio: 0.6, maxPeakMiB: 512 },
  // VHDX has no block status in QEMU: qemu-img reads every block; qimg skips the zero ones (issue 12: ≤ 1.0).
  // The pipe forms (issue 15): qimg writes standard output (`> out`) or reads standard input (`< disk.raw`), qemu-img a file.
  { name: 'convert -O qcow2  disk.raw - > out (to a pipe)', image: 'raw', qimg: (i) => ['convert', '-f', 'raw', '-O', 'qcow2', i, '-'], qemu: (i, o) => ['convert', '-f', 'raw', '-O', 'qcow2', i, o], stdout: true, verify: qcow2LikeQemu },
  { name: 'convert -c -O qcow2 (zlib)  disk.raw - > out (to a pipe)', image: 'raw', qimg: (i) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', i, '-'], qemu: (i, o) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', i, o], stdout: true, verify: qcow2LikeQemu, maxPeakMiB: 256 },
  { name: 'convert -O vmdk -o subformat=streamOptimized  disk.raw - > out (to a pipe)', image: 'raw', qimg: (i) => ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', i, '-'], qemu: (i, o) => ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', i, o], stdout: true, verify: vmdkLikeQemu, maxRatio: 0.6 },
  { name: 'convert -f raw -O qcow2  - out < disk.raw (from a pipe)', image: 'raw', qimg: (_, o) => ['convert', '-f', 'raw', '-O', 'qcow2', '-', o], qemu: (i, o) => ['convert', '-f', 'raw', '-O', 'qcow2', i, o], stdin: true, verify: qcow2LikeQemu, maxRatio: null },
  { name: 'convert -O qcow2  medium.vhdx', image: 'medium.vhdx', ...same((i, o) => ['convert', '-f', 'vhdx', '-O', 'qcow2', i, o]), verify: (a, b, src) => qcow2LikeQemu(a, b, src, { sourceFormat: 'vhdx' }), maxRatio: 1.0 },
  { name: 'convert -O qcow2  disk.vhdx', image: 'vhdx', ...same((i, o) => ['convert', '-f', 'vhdx', '-O', 'qcow2', i, o]), verify: (a, b, src) => qcow2LikeQemu(a, b, src, { sourceFormat: 'vhdx' }), maxRatio: 1.0 },
  { name: 'convert -O raw  disk.qcow (QCOW v1)', image: 'qcow', ...same((i, o) => ['convert', '-f', 'qcow', '-O', 'raw', i, o]), verify: sameBytes },
  { name: 'check  snaps.qcow2 (1 TiB, 16M clusters, 4 snapshots)', image: 'snaps', ...same((i) => ['check', i]) },
  {
    name: 'snapshot -c  snaps.qcow2', image: 'snaps', prepare: (o) => copySparse(image('snaps'), o),
    ...same((_, o) => ['snapshot', '-c', 's5', o]), verify: sameSnapshots,
  },
  {
    name: 'snapshot -d  snaps.qcow2', image: 'snaps', prepare: (o) => copySparse(image('snaps'), o),
    ...same((_, o) => ['snapshot', '-d', 's2', o]), verify: sameSnapshots,
  },
  {
    // Writes 4 KiB every 1 MiB of a fresh 64 GiB image: each write allocates a cluster.
    name: 'bench -w -s 4k -S 1M (4 KiB writes)', image: 'raw', maxRatio: null, reported: runCompleted,
    prepare: (o) => tool('qemu-img', ['create', '-q', '-f', 'qcow2', o, '64G']),
    ...same((_, o) => ['bench', '-w', '-f', 'qcow2', '-c', '20000', '-d', '16', '-s', '4k', '-S', '1M', o]),
  },
  {
    name: 'bench -s 4k -S 1M (4 KiB reads)  plain.qcow2', image: 'plain', maxRatio: null, reported: runCompleted,
    ...same((i) => ['bench', '-f', 'qcow2', '-c', '50000', '-d', '16', '-s', '4k', '-S', '1M', i]),
  },
]

// ---------------------------------------------------------------- main

if (!existsSync(path.join(root, 'dist', 'src', 'cli', 'main.js'))) {
  console.error('bench: qimg is not built; run `npm run build` first')
  process.exit(1)
}
for (const name of ['qemu-img', 'qemu-io', 'mke2fs', 'cmp']) {
  if (spawnSync(name, ['--version'], { stdio: 'ignore' }).error) {
    console.error(`bench: ${name} is required`)
    process.exit(1)
  }
}
mkdirSync(work, { recursive: true })
const needed = files.some((f) => !existsSync(path.join(work, f))) ? 24 : 10
const freeGiB = Number(tool('df', ['-B1', '--output=avail', work]).stdout.trim().split('\n').pop()) / GiB
if (freeGiB < needed) {
  console.error(`bench: ${freeGiB.toFixed(1)} GiB free in ${work}; about ${needed} GiB are needed`)
  process.exit(1)
}

console.log(`qimg vs ${tool('qemu-img', ['--version']).stdout.split('\n')[0]}; node ${process.version}; peak RSS via ${rssSource}`)
const loadNote = () => {
  const load = loadavg()[0]
  const cpus = availableParallelism()
  return `load average ${load.toFixed(1)} on ${cpus} CPUs${load > cpus / 2 ? ' (busy machine: wall times are noisy)' : ''}`
}
console.log(loadNote())
if (ONLY.some((text) => 'startup'.includes(text))) await startupBenchmarks({ qimgBin, emptyImage: image('empty'), runs: RUNS })
const canDropCaches = () => {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n')
    return true
  } catch {
    return false
  }
}
const cold = CACHE !== 'hot' && canDropCaches()
if (CACHE !== 'hot' && !cold) console.log(`QIMG_BENCH_CACHE=${CACHE}: cannot drop the page cache (needs root); hot cache only`)
const rows = []
for (const bench of BENCHMARKS.filter((b) => ONLY.some((text) => b.name.includes(text)))) {
  const input = image(bench.image)
  if (CACHE !== 'cold' || !cold || !bench.cacheVariants) rows.push(await runBenchmark(bench, { input, work, qimgBin, runs: RUNS, settleMs: SETTLE_MS }))
  if (cold && bench.cacheVariants) rows.push(await runBenchmark(bench, { input, work, qimgBin, runs: RUNS, settleMs: SETTLE_MS, cold: true }))
}

const table = [
  ['benchmark', 'qimg s', 'qemu-img s', 'ratio', 'target', 'qimg peak MiB', 'qemu peak MiB', 'best qimg/qemu s', 'cpu qimg/qemu s', 'user+sys qimg', 'user+sys qemu'],
  ...rows.map((r) => [
    r.name, r.qimg.toFixed(2), r.qemu.toFixed(2), (r.qimg / r.qemu).toFixed(2), r.maxRatio === null ? 'report' : `≤ ${r.maxRatio.toFixed(1)}`,
    r.qimgPeak.toFixed(0), r.qemuPeak.toFixed(0), `${r.qimgBest.toFixed(2)}/${r.qemuBest.toFixed(2)}`, `${r.qimgCpu.toFixed(2)}/${r.qemuCpu.toFixed(2)}`,
    `${r.qimgUser.toFixed(2)}+${r.qimgSystem.toFixed(2)}`, `${r.qemuUser.toFixed(2)}+${r.qemuSystem.toFixed(2)}`,
  ]),
]
const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)))
if (rows.length > 0) {
  console.log()
  for (const row of table) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '))
  console.log(`(times: median of ${RUNS} runs; ${loadNote()})`)
  console.log()
}
for (const r of rows) {
  const ratio = r.maxRatio === null ? 'no ratio target' : `ratio ≤ ${r.maxRatio.toFixed(1)}: ${r.qimg / r.qemu <= r.maxRatio ? 'PASS' : 'FAIL'}`
  const peak = `peak memory ≤ ${r.maxPeakMiB} MiB: ${r.qimgPeak <= r.maxPeakMiB ? 'PASS' : 'FAIL'}`
  const reported = r.reported ? `; tools report qimg/qemu-img ${r.reported}` : ''
  console.log(`${r.name}: ${ratio}, ${peak}; outputs: ${r.verdict.text}${reported}`)
}
await runNbdBenchmarks({ work, qimgBin, runs: RUNS, only: ONLY })
// A benchmark reports; it does not fail the build on timing. Wrong output is an error though.
process.exitCode = rows.every((r) => r.verdict.ok) ? 0 : 1
