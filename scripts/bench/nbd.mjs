// NBD benchmarks for npm run bench (QIMG_BENCH_ONLY=nbd selects them; nbd-randread, nbd-randwrite,
// nbd-copy, nbd-overhead one at a time): qimg nbd beside qemu-nbd, same image, same client,
// alternating runs. fio's nbd engine with 16 connections at queue depth 16 doing 4 KiB random
// writes into a fresh qcow2 image (so every write allocates), then 4 KiB random reads of what
// they wrote; nbdcopy reading a 512 MiB image sequentially. Reported: IOPS or MiB/s (median),
// the server's CPU seconds (user + system from /proc) and peak RSS (VmHWM). "Overhead": the same
// fio jobs through qimg nbd against a raw and a qcow2 export of the same data.
// Needs qemu-img, qemu-io, qemu-nbd, fio, nbdcopy.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { loadavg } from 'node:os'
import path from 'node:path'

const JOBS = 16
const DEPTH = 16
const JOB_MIB = 8
const COPY_MIB = 512
const TICK_S = 0.01 // USER_HZ is 100 on Linux

const sh = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
  return r.stdout
}

/** Starts a server on `image`; resolves once its pid file exists. */
async function serve(tool, qimgBin, image, format, dir) {
  const socket = path.join(dir, `${tool}.sock`)
  const pidFile = path.join(dir, `${tool}.pid`)
  rmSync(pidFile, { force: true })
  const args = ['-t', '-e', '0', '-f', format, '-k', socket, '--cache=writeback', '--pid-file', pidFile, image]
  const child = tool === 'qimg' ? spawn(process.execPath, [qimgBin, 'nbd', ...args], { stdio: 'ignore' }) : spawn('qemu-nbd', args, { stdio: 'ignore' })
  for (let i = 0; i < 600 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 50))
  const pid = child.pid
  const cpu = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * TICK_S
  }
  const peakMiB = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024
  return {
    uri: `nbd+unix:///?socket=${socket}`,
    cpu,
    peakMiB,
    stop: () => new Promise((resolve) => { child.once('exit', resolve); child.kill('SIGTERM') }),
  }
}

/** fio over `uri`: JOBS connections at DEPTH, 4 KiB, each its own JOB_MIB region; IOPS summed. */
function fio(uri, rw) {
  const out = sh('fio', ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', `--iodepth=${DEPTH}`, `--numjobs=${JOBS}`,
    `--size=${JOB_MIB}M`, `--offset_increment=${JOB_MIB}M`, '--group_reporting', '--output-format=json', '--randrepeat=1'])
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0]
  return rw.includes('write') ? job.write.iops : job.read.iops
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** One measured run of `workload` against a fresh server of `tool`: its figure, CPU s, peak MiB. */
async function once(tool, setup, workload, ctx) {
  const { image, format } = setup()
  const server = await serve(tool, ctx.qimgBin, image, format, ctx.dir)
  try {
    const cpu0 = server.cpu()
    const value = workload(server.uri)
    return { value, cpu: server.cpu() - cpu0, peak: server.peakMiB() }
  } finally {
    await server.stop()
  }
}

/** Alternating runs of both sides; medians. */
async function compare(name, unit, sides, setup, workload, ctx) {
  const results = Object.fromEntries(sides.map((s) => [s.label, []]))
  for (let i = 0; i < ctx.runs; i++) {
    for (const side of i % 2 ? [...sides].reverse() : sides) results[side.label].push(await once(side.tool, () => setup(side), workload, ctx))
  }
  const row = { name, unit }
  for (const side of sides) {
    const r = results[side.label]
    row[side.label] = { value: median(r.map((x) => x.value)), cpu: median(r.map((x) => x.cpu)), peak: Math.max(...r.map((x) => x.peak)) }
  }
  return row
}

export async function runNbdBenchmarks({ work, qimgBin, runs, only }) {
  const wanted = (name) => only.some((text) => name.includes(text))
  const names = ['nbd-randwrite', 'nbd-randread', 'nbd-copy', 'nbd-overhead-write', 'nbd-overhead-read']
  if (!names.some(wanted)) return true
  const dir = path.join(work, 'nbd')
  mkdirSync(dir, { recursive: true })
  const ctx = { qimgBin, runs, dir }
  const sizeMiB = JOBS * JOB_MIB
  const fresh = (format, label) => () => {
    const image = path.join(dir, `${label}.${format}`)
    rmSync(image, { force: true })
    sh('qemu-img', ['create', '-f', format, image, `${sizeMiB}M`])
    return { image, format }
  }
  // Data everywhere, written once per format (qemu-io), for the read jobs.
  const filled = {}
  const full = (format) => () => {
    const image = path.join(dir, `full.${format}`)
    if (!filled[format]) {
      rmSync(image, { force: true })
      sh('qemu-img', ['create', '-f', format, image, `${sizeMiB}M`])
      sh('qemu-io', ['-f', format, '-c', `write -P 0x5a 0 ${sizeMiB}M`, image])
      filled[format] = true
    }
    return { image, format }
  }
  const versus = [{ label: 'qimg', tool: 'qimg' }, { label: 'qemu', tool: 'qemu-nbd' }]
  const rows = []
  if (wanted('nbd-randwrite')) rows.push(await compare('nbd-randwrite 4k QD16 x16, fresh qcow2', 'IOPS', versus, (s) => fresh('qcow2', s.label)(), (uri) => fio(uri, 'randwrite'), ctx))
  if (wanted('nbd-randread')) rows.push(await compare('nbd-randread 4k QD16 x16, qcow2', 'IOPS', versus, () => full('qcow2')(), (uri) => fio(uri, 'randread'), ctx))
  if (wanted('nbd-copy')) {
    const image = path.join(dir, 'copy.qcow2')
    if (!existsSync(image)) {
      sh('qemu-img', ['create', '-f', 'qcow2', image, `${COPY_MIB}M`])
      sh('qemu-io', ['-c', `write -P 0x33 0 ${COPY_MIB}M`, image])
    }
    const copy = (uri) => {
      const start = process.hrtime.bigint()
      sh('nbdcopy', [uri, 'null:'])
      return COPY_MIB / (Number(process.hrtime.bigint() - start) / 1e9)
    }
    rows.push(await compare(`nbd-copy nbdcopy sequential read ${COPY_MIB} MiB qcow2`, 'MiB/s', versus, () => ({ image, format: 'qcow2' }), copy, ctx))
  }
  const formats = [{ label: 'qimg', tool: 'qimg', format: 'qcow2' }, { label: 'qemu', tool: 'qimg', format: 'raw' }]
  if (wanted('nbd-overhead-write')) rows.push({ ...await compare('nbd-overhead-write qimg qcow2 vs qimg raw, fresh', 'IOPS', formats, (s) => fresh(s.format, `ov-${s.format}`)(), (uri) => fio(uri, 'randwrite'), ctx), overhead: true })
  if (wanted('nbd-overhead-read')) rows.push({ ...await compare('nbd-overhead-read qimg qcow2 vs qimg raw', 'IOPS', formats, (s) => full(s.format)(), (uri) => fio(uri, 'randread'), ctx), overhead: true })

  console.log()
  for (const r of rows) {
    const a = r.qimg
    const b = r.qemu
    const [left, right] = r.overhead ? ['qcow2', 'raw'] : ['qimg', 'qemu-nbd']
    const ratio = a.value / b.value
    const verdict = r.overhead ? `overhead ${((1 - ratio) * 100).toFixed(1)} % (target ≤ 5 %)` : `ratio ${ratio.toFixed(2)} (target ≥ 1.00: ${ratio >= 1 ? 'PASS' : 'FAIL'})`
    console.log(`${r.name}: ${left} ${a.value.toFixed(0)} ${r.unit}, ${right} ${b.value.toFixed(0)} ${r.unit}; ${verdict}; server CPU s ${a.cpu.toFixed(2)}/${b.cpu.toFixed(2)}; peak RSS MiB ${a.peak.toFixed(0)}/${b.peak.toFixed(0)}${r.overhead ? '' : ` (qimg ≤ 256: ${a.peak <= 256 ? 'PASS' : 'FAIL'})`}`)
  }
  console.log(`(medians of ${runs} alternating runs; ${JOBS} connections at depth ${DEPTH}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')})`)
  return true
}
