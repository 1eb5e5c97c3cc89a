// Timing one benchmark: qimg and qemu-img side by side, alternating, with peak RSS and CPU time.
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import path from 'node:path'

const gnuTime = existsSync('/usr/bin/time') && spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { encoding: 'utf8' }).status === 0
export const rssSource = gnuTime ? '/usr/bin/time' : '/proc VmHWM polling'

/**
 * Runs a command; resolves to { seconds, cpu, peakMiB, stdout }. `files.stdin` / `files.stdout`
 * name files the command reads as standard input / writes as standard output (the pipe forms). Peak RSS and CPU seconds (user +
 * system) come from GNU time (the kernel's rusage of the child) when /usr/bin/time exists; else
 * peak RSS is polled from /proc/PID/status VmHWM and CPU time is unknown (NaN).
 */
export function measure(cmd, args, files = {}) {
  return new Promise((resolve, reject) => {
    const argv = gnuTime ? ['/usr/bin/time', '-f', 'RUSAGE %M %U %S', cmd, ...args] : [cmd, ...args]
    const stdin = files.stdin ? openSync(files.stdin, 'r') : 'ignore'
    const stdoutFd = files.stdout ? openSync(files.stdout, 'w') : 'pipe'
    const t0 = performance.now()
    const child = spawn(argv[0], argv.slice(1), { stdio: [stdin, stdoutFd, 'pipe'] })
    for (const fd of [stdin, stdoutFd]) if (typeof fd === 'number') closeSync(fd)
    let stdout = ''
    let stderr = ''
    let polledKiB = 0
    child.stdout?.on('data', (d) => { stdout += d })
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
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}):\n${stdout}${stderr}`))
      resolve({ seconds, cpu: m ? Number(m[2]) + Number(m[3]) : NaN, user: m ? Number(m[2]) : NaN, system: m ? Number(m[3]) : NaN, peakMiB: (m ? Number(m[1]) : polledKiB) / 1024, stdout })
    })
  })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs `bench` (see BENCHMARKS in scripts/bench.mjs): a warm-up run per tool, then `runs` measured
 * runs each in alternating order. Before every run the tool's output is deleted and
 * `bench.prepare(out)` (untimed) runs; then `sync` and a pause, so that the previous run's
 * writeback and page freeing do not land in this one.
 */
export async function runBenchmark(bench, { input, work, qimgBin, runs, settleMs, cold = false }) {
  const tools = {
    // bench.stdin / bench.stdout: qimg reads the input as standard input / writes the output as standard output.
    qimg: { out: path.join(work, 'out-qimg'), run: (out) => measure(process.execPath, [qimgBin, ...bench.qimg(input, out)], { stdin: bench.stdin ? input : undefined, stdout: bench.stdout ? out : undefined }) },
    qemu: { out: path.join(work, 'out-qemu'), run: (out) => measure(bench.qemuTool ?? 'qemu-img', bench.qemu(input, out)) },
  }
  // qemu-img's LUKS key-slot setup times PBKDF2 with getrusage and now and then gives up on a
  // busy machine ("Unable to get accurate CPU usage"): such a run is retried, not counted.
  const flaky = /Unable to get accurate CPU usage/
  const once = async (name) => {
    const tool = tools[name]
    rmSync(tool.out, { force: true })
    if (bench.prepare) bench.prepare(tool.out)
    spawnSync('sync')
    // Cold cache: the input is read from the disk, as a file not touched since boot would be.
    if (cold) writeFileSync('/proc/sys/vm/drop_caches', '3\n')
    await sleep(settleMs)
    for (let attempt = 1; ; attempt++) {
      try {
        return await tool.run(tool.out)
      } catch (err) {
        if (attempt >= 5 || !flaky.test(err.message)) throw err
        rmSync(tool.out, { force: true })
        if (bench.prepare) bench.prepare(tool.out)
      }
    }
  }
  console.log(`\n${bench.name}${cold ? ' (cold cache)' : ''}: warm-up, then ${runs} runs each`)
  await once('qimg')
  await once('qemu')
  const results = { qimg: [], qemu: [] }
  for (let i = 0; i < runs; i++) {
    for (const name of i % 2 === 0 ? ['qimg', 'qemu'] : ['qemu', 'qimg']) {
      const r = await once(name)
      results[name].push(r)
      const reported = bench.reported ? `, reports ${bench.reported(r.stdout)}` : ''
      console.log(`  ${name.padEnd(4)} run ${i + 1}: ${r.seconds.toFixed(2)} s, cpu ${r.cpu.toFixed(2)} s, peak ${r.peakMiB.toFixed(0)} MiB${reported}, load ${loadavg()[0].toFixed(1)}`)
    }
  }
  const verdict = bench.verify ? bench.verify(tools.qimg.out, tools.qemu.out, input) : { ok: true, text: 'not compared' }
  console.log(`  outputs: ${verdict.text}`)
  const row = {
    name: cold ? `${bench.name} (cold)` : bench.name,
    maxRatio: bench.maxRatio === undefined ? 1.0 : bench.maxRatio,
    maxPeakMiB: bench.maxPeakMiB ?? 256,
    qimg: median(results.qimg.map((r) => r.seconds)),
    qemu: median(results.qemu.map((r) => r.seconds)),
    qimgBest: Math.min(...results.qimg.map((r) => r.seconds)),
    qemuBest: Math.min(...results.qemu.map((r) => r.seconds)),
    qimgCpu: median(results.qimg.map((r) => r.cpu)),
    qemuCpu: median(results.qemu.map((r) => r.cpu)),
    qimgUser: median(results.qimg.map((r) => r.user)),
    qimgSystem: median(results.qimg.map((r) => r.system)),
    qemuUser: median(results.qemu.map((r) => r.user)),
    qemuSystem: median(results.qemu.map((r) => r.system)),
    qimgPeak: Math.max(...results.qimg.map((r) => r.peakMiB)),
    qemuPeak: Math.max(...results.qemu.map((r) => r.peakMiB)),
    reported: bench.reported ? `${bench.reported(results.qimg.at(-1).stdout)} / ${bench.reported(results.qemu.at(-1).stdout)}` : undefined,
    verdict,
  }
  rmSync(tools.qimg.out, { force: true })
  rmSync(tools.qemu.out, { force: true })
  return row
}
