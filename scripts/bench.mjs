// npm run bench: qimg against qemu-img on realistic multi-GiB images (a benchmark, not a test).
//
// Builds its images once and caches them in bench-work/ (delete the directory to rebuild):
//   disk.raw     3 GiB ext4 filesystem filled with ~2 GiB of real files (/usr/share, /usr/lib…)
//   plain.qcow2  qemu-img convert -O qcow2 disk.raw
//   zlib.qcow2   qemu-img convert -c -O qcow2 disk.raw (zlib-compressed clusters)
// Then times each benchmark (BENCHMARKS below) for qimg and qemu-img side by side: one unmeasured
// warm-up run each, then RUNS measured runs each in alternating order; wall time (median, and
// best), CPU time (user + system, median) and peak RSS (max). Wall times swing a lot on a busy
// or virtualised machine: the load average is printed, compare CPU times and best runs too.
// Needs qemu-img, mke2fs (e2fsprogs) and a built qimg (npm run build).
//
//   QIMG_BENCH_RUNS=N       measured runs per tool (default 3)
//   QIMG_BENCH_ONLY=TEXT    only benchmarks whose name contains TEXT
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const work = path.join(root, 'bench-work')
const qimgBin = path.join(root, 'bin', 'qimg.js')
const RUNS = Number(process.env.QIMG_BENCH_RUNS ?? 3)
const ONLY = process.env.QIMG_BENCH_ONLY ?? ''
const SETTLE_MS = Number(process.env.QIMG_BENCH_SETTLE_MS ?? 2000)
const GiB = 1024 ** 3
const MiB = 1024 ** 2

// Targets every benchmark is held to.
const MAX_RATIO = 1.0
const MAX_PEAK_MIB = 256

// ---------------------------------------------------------------- images (cached in bench-work/)

const DISK_SIZE = '3G'
const DATA_BUDGET = 2 * GiB // apparent bytes of files copied into the filesystem
const DATA_SOURCES = ['/usr/share', '/usr/lib', '/usr/lib64', '/usr/libexec', '/usr/bin', '/opt']

const IMAGES = {
  raw: { file: 'disk.raw', build: buildDisk },
  plain: { file: 'plain.qcow2', build: (out) => sh('qemu-img', ['convert', '-O', 'qcow2', image('raw'), out]) },
  zlib: { file: 'zlib.qcow2', build: (out) => sh('qemu-img', ['convert', '-c', '-O', 'qcow2', image('raw'), out]) },
}

/** Path of a cached image, building it (and what it needs) on first use. */
function image(name) {
  const { file, build } = IMAGES[name]
  const target = path.join(work, file)
  if (!existsSync(target)) {
    const t0 = performance.now()
    console.log(`building bench-work/${file} …`)
    const tmp = `${target}.tmp`
    rmSync(tmp, { force: true })
    build(tmp)
    renameSync(tmp, target)
    console.log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${describeFile(target)}`)
  }
  return target
}

/** A 3 GiB ext4 image filled from a staging directory of hard links (copies across devices). */
function buildDisk(out) {
  const staging = path.join(work, 'staging')
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging)
  let budget = DATA_BUDGET
  // Whole source trees when they fit, else their children one by one, until the budget is spent.
  const add = (src, depth) => {
    if (budget <= 0 || !existsSync(src) || src.startsWith(root)) return
    const size = duBytes(src)
    if (size <= budget) {
      const dest = path.join(staging, src.replaceAll('/', '_').replace(/^_/, ''))
      const linked = spawnSync('cp', ['-al', src, dest], { stdio: 'ignore' }).status === 0
      if (!linked) {
        rmSync(dest, { recursive: true, force: true })
        sh('cp', ['-a', src, dest])
      }
      budget -= size
    } else if (depth < 2 && statSync(src).isDirectory()) {
      for (const child of readdirSync(src).sort()) add(path.join(src, child), depth + 1)
    }
  }
  for (const src of DATA_SOURCES) add(src, 0)
  console.log(`  staged ${((DATA_BUDGET - budget) / GiB).toFixed(2)} GiB of files`)
  sh('mke2fs', ['-q', '-t', 'ext4', '-d', staging, '-F', out, DISK_SIZE])
  rmSync(staging, { recursive: true, force: true })
}

function duBytes(p) {
  const r = spawnSync('du', ['-s', '--apparent-size', '-B1', p], { encoding: 'utf8' })
  return Number(r.stdout.split('\t')[0]) || 0
}

function describeFile(file) {
  const st = statSync(file)
  return `${(st.size / GiB).toFixed(2)} GiB, ${(st.blocks * 512 / GiB).toFixed(2)} GiB allocated`
}

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`)
}

// ---------------------------------------------------------------- benchmarks

/** Same bytes in both outputs (cmp stops at the first difference). */
function sameBytes(a, b) {
  const r = spawnSync('cmp', ['-s', a, b])
  if (r.error) throw r.error
  return r.status === 0 ? 'identical' : `DIFFERENT (cmp exit ${r.status})`
}

/**
 * One benchmark: `image` is a key of IMAGES; qimg / qemu are argument lists for (input, output);
 * verify(qimgOut, qemuOut) returns a short verdict ("identical", or what is wrong). Outputs are
 * deleted before every run, so each run starts from nothing.
 */
const BENCHMARKS = [
  {
    name: 'convert -O raw  plain.qcow2',
    image: 'plain',
    qimg: (input, out) => ['convert', '-O', 'raw', input, out],
    qemu: (input, out) => ['convert', '-O', 'raw', input, out],
    verify: sameBytes,
  },
  {
    name: 'convert -O raw  zlib.qcow2',
    image: 'zlib',
    qimg: (input, out) => ['convert', '-O', 'raw', input, out],
    qemu: (input, out) => ['convert', '-O', 'raw', input, out],
    verify: sameBytes,
  },
]

// ---------------------------------------------------------------- measuring

const gnuTime = existsSync('/usr/bin/time') && spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { encoding: 'utf8' }).status === 0

/**
 * Runs a command; resolves to { seconds, cpu, peakMiB }. Peak RSS and CPU seconds (user + system)
 * come from GNU time (the kernel's rusage of the child) when /usr/bin/time exists; else peak RSS
 * is polled from /proc/PID/status VmHWM and CPU time is unknown (NaN).
 */
function measure(cmd, args) {
  return new Promise((resolve, reject) => {
    const argv = gnuTime ? ['/usr/bin/time', '-f', 'RUSAGE %M %U %S', cmd, ...args] : [cmd, ...args]
    const t0 = performance.now()
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    let polledKiB = 0
    child.stderr.on('data', (d) => { stderr += d })
    const poll = gnuTime ? undefined : setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
        if (m) polledKiB = Math.max(polledKiB, Number(m[1]))
      } catch { /* exited */ }
    }, 5)
    child.on('error', reject)
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000
      clearInterval(poll)
      const m = /RUSAGE (\d+) ([\d.]+) ([\d.]+)/.exec(stderr)
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}):\n${stderr}`))
      resolve({ seconds, cpu: m ? Number(m[2]) + Number(m[3]) : NaN, peakMiB: (m ? Number(m[1]) : polledKiB) / 1024 })
    })
  })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function runBenchmark(bench) {
  const input = image(bench.image)
  const tools = {
    qimg: { out: path.join(work, 'out-qimg'), run: (out) => measure(process.execPath, [qimgBin, ...bench.qimg(input, out)]) },
    qemu: { out: path.join(work, 'out-qemu'), run: (out) => measure('qemu-img', bench.qemu(input, out)) },
  }
  const once = async (name) => {
    const tool = tools[name]
    rmSync(tool.out, { force: true })
    spawnSync('sync') // don't let the previous run's writeback land in this one
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS)) // nor the freeing of its pages
    return tool.run(tool.out)
  }
  console.log(`\n${bench.name}: warm-up, then ${RUNS} runs each`)
  await once('qimg')
  await once('qemu')
  const results = { qimg: [], qemu: [] }
  for (let i = 0; i < RUNS; i++) {
    for (const name of i % 2 === 0 ? ['qimg', 'qemu'] : ['qemu', 'qimg']) {
      const r = await once(name)
      results[name].push(r)
      console.log(`  ${name.padEnd(4)} run ${i + 1}: ${r.seconds.toFixed(2)} s, cpu ${r.cpu.toFixed(2)} s, peak ${r.peakMiB.toFixed(0)} MiB, load ${loadavg()[0].toFixed(1)}`)
    }
  }
  const verdict = bench.verify(tools.qimg.out, tools.qemu.out)
  console.log(`  outputs: ${verdict}`)
  const row = {
    name: bench.name,
    qimg: median(results.qimg.map((r) => r.seconds)),
    qemu: median(results.qemu.map((r) => r.seconds)),
    qimgBest: Math.min(...results.qimg.map((r) => r.seconds)),
    qemuBest: Math.min(...results.qemu.map((r) => r.seconds)),
    qimgCpu: median(results.qimg.map((r) => r.cpu)),
    qemuCpu: median(results.qemu.map((r) => r.cpu)),
    qimgPeak: Math.max(...results.qimg.map((r) => r.peakMiB)),
    qemuPeak: Math.max(...results.qemu.map((r) => r.peakMiB)),
    verdict,
  }
  rmSync(tools.qimg.out, { force: true })
  rmSync(tools.qemu.out, { force: true })
  return row
}

// ---------------------------------------------------------------- main

if (!existsSync(path.join(root, 'dist', 'src', 'cli', 'main.js'))) {
  console.error('bench: qimg is not built; run `npm run build` first')
  process.exit(1)
}
for (const tool of ['qemu-img', 'mke2fs', 'cmp']) {
  if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) {
    console.error(`bench: ${tool} is required`)
    process.exit(1)
  }
}
mkdirSync(work, { recursive: true })
const needed = Object.values(IMAGES).some((i) => !existsSync(path.join(work, i.file))) ? 16 : 8
const freeGiB = statfsFreeGiB(work)
if (freeGiB < needed) {
  console.error(`bench: ${freeGiB.toFixed(1)} GiB free in ${work}; about ${needed} GiB are needed`)
  process.exit(1)
}
function statfsFreeGiB(dir) {
  const r = spawnSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' })
  return Number(r.stdout.trim().split('\n').pop()) / GiB
}

console.log(`qimg vs ${spawnSync('qemu-img', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]}; node ${process.version}; peak RSS via ${gnuTime ? '/usr/bin/time' : '/proc VmHWM polling'}`)
const loadNote = () => {
  const load = loadavg()[0]
  const cpus = availableParallelism()
  return `load average ${load.toFixed(1)} on ${cpus} CPUs${load > cpus / 2 ? ' (busy machine: wall times are noisy)' : ''}`
}
console.log(loadNote())
const rows = []
for (const bench of BENCHMARKS.filter((b) => b.name.includes(ONLY))) rows.push(await runBenchmark(bench))

const table = [
  ['benchmark', 'qimg s', 'qemu-img s', 'ratio', 'qimg peak MiB', 'qemu peak MiB', 'best qimg/qemu s', 'cpu qimg/qemu s', 'outputs'],
  ...rows.map((r) => [
    r.name, r.qimg.toFixed(2), r.qemu.toFixed(2), (r.qimg / r.qemu).toFixed(2), r.qimgPeak.toFixed(0), r.qemuPeak.toFixed(0),
    `${r.qimgBest.toFixed(2)}/${r.qemuBest.toFixed(2)}`, `${r.qimgCpu.toFixed(2)}/${r.qemuCpu.toFixed(2)}`, r.verdict,
  ]),
]
const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)))
console.log()
const last = table[0].length - 1
for (const row of table) console.log(row.map((cell, c) => (c === 0 || c === last ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '))
console.log(`(times: median of ${RUNS} runs; ${loadNote()})`)
console.log()
for (const r of rows) {
  const ratioOk = r.qimg / r.qemu <= MAX_RATIO
  const peakOk = r.qimgPeak <= MAX_PEAK_MIB
  console.log(`${r.name}: target ratio ≤ ${MAX_RATIO.toFixed(1)}: ${ratioOk ? 'PASS' : 'FAIL'}, peak memory ≤ ${MAX_PEAK_MIB} MiB: ${peakOk ? 'PASS' : 'FAIL'}${r.verdict === 'identical' ? '' : `, outputs ${r.verdict}`}`)
}
// A benchmark reports; it does not fail the build on timing. Wrong output is an error though.
process.exitCode = rows.every((r) => r.verdict === 'identical') ? 0 : 1
