// Start-up beside qemu-img and Node's own (issue 16: `qimg info` ≤ `node -e 0` + 30 ms): short
// commands run many times, alternating, warm page cache; medians of wall and CPU time.
import { measure } from './run.mjs'

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ms = (seconds) => `${(seconds * 1000).toFixed(0)} ms`

/** Runs the start-up benchmarks on `emptyImage` (a 1 GiB qcow2); returns rows for the table. */
export async function startupBenchmarks({ qimgBin, emptyImage, runs }) {
  const node = process.execPath
  const commands = {
    'node -e 0': [node, ['-e', '0']],
    'qimg info': [node, [qimgBin, 'info', emptyImage]],
    'qemu-img info': ['qemu-img', ['info', emptyImage]],
    'qimg --version': [node, [qimgBin, '--version']],
    'qemu-img --version': ['qemu-img', ['--version']],
  }
  const results = Object.fromEntries(Object.keys(commands).map((name) => [name, []]))
  const count = Math.max(runs * 5, 15)
  for (let i = 0; i < count + 1; i++) {
    for (const [name, [cmd, args]] of Object.entries(commands)) {
      const r = await measure(cmd, args)
      if (i > 0) results[name].push(r) // the first round warms the page cache
    }
  }
  const wall = (name) => median(results[name].map((r) => r.seconds))
  const cpu = (name) => median(results[name].map((r) => r.cpu))
  console.log(`\nstart-up: median of ${count} alternating runs`)
  for (const name of Object.keys(commands)) console.log(`  ${name.padEnd(20)} ${ms(wall(name)).padStart(7)} wall, ${ms(cpu(name)).padStart(7)} cpu`)
  const overhead = wall('qimg info') - wall('node -e 0')
  console.log(`  qimg info over node -e 0: ${ms(overhead)} (target ≤ 30 ms: ${overhead <= 0.03 ? 'PASS' : 'FAIL'})`)
  return [
    { name: 'info  empty.qcow2 (1 GiB)', qimg: wall('qimg info'), qemu: wall('qemu-img info'), qimgCpu: cpu('qimg info'), qemuCpu: cpu('qemu-img info'), target: `node+30ms` },
    { name: '--version', qimg: wall('qimg --version'), qemu: wall('qemu-img --version'), qimgCpu: cpu('qimg --version'), qemuCpu: cpu('qemu-img --version'), target: 'report' },
  ]
}
