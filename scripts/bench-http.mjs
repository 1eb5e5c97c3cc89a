// node scripts/bench-http.mjs: `convert -O raw` of a qcow2 served over HTTP (a local server with
// Range support), qimg beside qemu-img's curl driver (Debian's qemu-block-extra). Both read the
// same URL from the same server; outputs are compared with cmp. Wall and CPU (user + system) per
// run, medians, and the load average. A benchmark, not a test. Needs qemu-img, qemu-io and a
// built qimg (npm run build).
//   QIMG_BENCH_RUNS=N         measured runs per tool (default 3)
//   QIMG_BENCH_HTTP_GIB=N     virtual size of the image (default 2; half of it is data)
import { spawnSync } from 'node:child_process'
import { createReadStream, existsSync, mkdirSync, rmSync, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { loadavg } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const work = path.join(root, 'bench-work', 'http')
const RUNS = Number(process.env.QIMG_BENCH_RUNS ?? 3)
const GIB = Number(process.env.QIMG_BENCH_HTTP_GIB ?? 2)
mkdirSync(work, { recursive: true })

const image = path.join(work, `data-${GIB}g.qcow2`)
if (!existsSync(image)) {
  const ok = (cmd, args) => { const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }); if (r.status !== 0) throw new Error(`${cmd} failed`) }
  ok('qemu-img', ['create', '-q', '-f', 'qcow2', image, `${GIB}G`])
  // Half the guest is data, in 64 MiB runs of patterns every 128 MiB.
  const commands = []
  for (let at = 0; at < GIB * 1024; at += 128) commands.push('-c', `write -P ${(at / 128) % 251 + 1} ${at}M 64M`)
  ok('qemu-io', [...commands, image])
}

// A range server: 206 with Content-Range, the file streamed from disk.
const size = statSync(image).size
const server = createServer((request, response) => {
  const m = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '')
  const headers = { 'accept-ranges': 'bytes', etag: '"bench"', 'content-type': 'application/octet-stream' }
  if (!m) {
    response.writeHead(200, { ...headers, 'content-length': size })
    if (request.method === 'HEAD') response.end()
    else createReadStream(image).pipe(response)
    return
  }
  const first = Number(m[1])
  const last = Math.min(m[2] ? Number(m[2]) : size - 1, size - 1)
  response.writeHead(206, { ...headers, 'content-range': `bytes ${first}-${last}/${size}`, 'content-length': last - first + 1 })
  createReadStream(image, { start: first, end: last }).pipe(response)
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const url = `http://127.0.0.1:${server.address().port}/${path.basename(image)}`

/** Runs one convert under bash's `time`: wall and CPU seconds (the server runs in this process). */
async function timed(argv) {
  const { spawn } = await import('node:child_process')
  const script = `TIMEFORMAT='%R %U %S'; time ${argv.map((a) => `'${a}'`).join(' ')} >/dev/null`
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d) => { err += d })
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${argv[0]} exited ${code}: ${err}`))
      const [wall, user, sys] = err.trim().split('\n').pop().split(' ').map(Number)
      resolve({ wall, cpu: user + sys })
    })
  })
}

const tools = {
  'qemu-img (curl)': (out) => ['qemu-img', 'convert', '-O', 'raw', url, out],
  qimg: (out) => [process.execPath, path.join(root, 'bin', 'qimg.js'), 'convert', '-O', 'raw', url, out],
}
const results = Object.fromEntries(Object.keys(tools).map((name) => [name, []]))
const median = (values) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)]
for (let run = -1; run < RUNS; run++) {
  for (const [name, argv] of run % 2 === 0 ? Object.entries(tools) : Object.entries(tools).reverse()) {
    const out = path.join(work, `${name.split(' ')[0]}.raw`)
    rmSync(out, { force: true })
    const r = await timed(argv(out))
    if (run >= 0) results[name].push(r)
  }
}
const same = spawnSync('cmp', ['-s', path.join(work, 'qemu-img.raw'), path.join(work, 'qimg.raw')]).status === 0
server.close()
console.log(`convert -O raw over HTTP: ${GIB} GiB qcow2 (${(size / 2 ** 20).toFixed(0)} MiB file, half of the guest data), ${RUNS} runs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
for (const [name, runs] of Object.entries(results)) {
  console.log(`${name.padEnd(16)} wall ${median(runs.map((r) => r.wall)).toFixed(2)} s (best ${Math.min(...runs.map((r) => r.wall)).toFixed(2)})  cpu ${median(runs.map((r) => r.cpu)).toFixed(2)} s`)
}
const ratio = median(results.qimg.map((r) => r.wall)) / median(results['qemu-img (curl)'].map((r) => r.wall))
console.log(`qimg / qemu-img wall ratio ${ratio.toFixed(2)}; outputs ${same ? 'identical' : 'DIFFERENT'}`)
