// npm run iotests: QEMU's own regression suite (qemu-iotests, of the installed QEMU version) as
// qimg's conformance suite. Each chosen test runs once with qemu-img/qemu-io and once with qimg
// standing in for both; a table shows both verdicts and qimg's first differing line.
//
//   npm run iotests                       every test in scripts/iotests/tests.tsv, both tools
//   npm run iotests -- --subset ci        the CI subset, qimg only; exits 1 if one fails
//   npm run iotests -- --tool qimg 013 024   chosen tests, one tool
//   QIMG_IOTESTS_TIMEOUT=S  seconds before one check run (one tool, one format) is stopped (default 3 h)
//   options: --format qcow2|raw, --jobs N, --work DIR (default iotests-work/, or QIMG_IOTESTS_WORK),
//            --qimg PATH (another checkout's bin/qimg.js)
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runCheck } from './iotests/check.mjs'
import { qemuSource } from './iotests/source.mjs'
import { buildTree } from './iotests/tree.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    subset: { type: 'string' },
    tool: { type: 'string' },
    format: { type: 'string' },
    jobs: { type: 'string' },
    work: { type: 'string' },
    qimg: { type: 'string' },
  },
})

/** scripts/iotests/tests.tsv: test, formats it runs with ('-' when excluded), subset, reason. */
function readList() {
  const rows = []
  for (const line of readFileSync(path.join(root, 'scripts', 'iotests', 'tests.tsv'), 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const [test, formats, subset, reason] = line.split('\t')
    rows.push({ test, formats: formats === '-' ? [] : formats.split(','), subsets: subset === '-' ? [] : subset.split(','), reason: reason ?? '' })
  }
  return rows
}

const list = readList()
const chosen = list.filter((row) => row.formats.length > 0)
  .filter((row) => values.subset === undefined || row.subsets.includes(values.subset))
  .filter((row) => positionals.length === 0 || positionals.includes(row.test))
for (const name of positionals) if (!list.some((row) => row.test === name)) console.error(`iotests: ${name} is not in scripts/iotests/tests.tsv (running it anyway)`)
const extra = positionals.filter((name) => !list.some((row) => row.test === name)).map((test) => ({ test, formats: ['qcow2'], subsets: [], reason: '' }))
const rows = [...chosen, ...extra]
const tools = values.tool ? [values.tool] : values.subset ? ['qimg'] : ['qemu', 'qimg']
const formats = values.format ? [values.format] : ['qcow2', 'raw']
const workDir = path.resolve(values.work ?? process.env.QIMG_IOTESTS_WORK ?? path.join(root, 'iotests-work'))
const qimgBin = path.resolve(values.qimg ?? path.join(root, 'bin', 'qimg.js'))
if (!existsSync(path.join(path.dirname(qimgBin), '..', 'dist', 'src', 'cli', 'main.js'))) {
  console.error('iotests: qimg is not built; run `npm run build` first')
  process.exit(1)
}

const srcDir = qemuSource(workDir)
const started = Date.now()
// Both tools run side by side; each gets its share of the cores.
const jobs = Number(values.jobs ?? Math.max(1, Math.floor(availableParallelism() / tools.length)))
const results = new Map() // `${tool} ${format} ${test}` → { status, detail }
let done = 0
const total = tools.length * rows.reduce((n, row) => n + row.formats.filter((f) => formats.includes(f)).length, 0)
await Promise.all(tools.map(async (tool) => {
  // Several checkouts may share one work directory: each qimg gets its own tree and scratch.
  const tag = tool === 'qimg' ? `qimg-${createHash('sha256').update(qimgBin).digest('hex').slice(0, 8)}` : tool
  const checkDir = buildTree(workDir, srcDir, tool, qimgBin, tag)
  for (const format of formats) {
    const tests = rows.filter((row) => row.formats.includes(format)).map((row) => row.test)
    if (tests.length === 0) continue
    const verdicts = await runCheck({
      checkDir, srcDir, workDir, tag, format, tests, jobs, timeoutSeconds: Number(process.env.QIMG_IOTESTS_TIMEOUT ?? 3 * 3600),
      onLine: (test, status) => {
        done++
        if (process.stdout.isTTY) process.stdout.write(`\r${done}/${total} ${tool} ${format} ${test} ${status}        `)
      },
    })
    for (const [test, verdict] of verdicts) results.set(`${tool} ${format} ${test}`, verdict)
  }
}))
if (process.stdout.isTTY) process.stdout.write('\n')

// The table: one row a test and format.
const pad = (text, width) => text + ' '.repeat(Math.max(0, width - text.length))
console.log(`${pad('test', 26)}${pad('format', 7)}${tools.map((t) => pad(t === 'qemu' ? 'qemu-img' : 'qimg', 9) + pad('s', 6)).join('')}first difference (qimg)`)
let baselinePasses = 0
let qimgPasses = 0
let bothPass = 0
const failures = []
for (const row of rows) {
  for (const format of row.formats.filter((f) => formats.includes(f))) {
    const verdicts = tools.map((tool) => results.get(`${tool} ${format} ${row.test}`) ?? { status: '?', detail: '' })
    const qemu = tools.includes('qemu') ? verdicts[tools.indexOf('qemu')] : undefined
    const ours = tools.includes('qimg') ? verdicts[tools.indexOf('qimg')] : undefined
    if (qemu?.status === 'pass') baselinePasses++
    if (ours?.status === 'pass') qimgPasses++
    if (qemu?.status === 'pass' && ours?.status === 'pass') bothPass++
    if (ours !== undefined && ours.status !== 'pass') failures.push(`${row.test} (${format})`)
    const detail = ours && ours.status !== 'pass' ? ours.detail : qemu && qemu.status !== 'pass' ? `qemu-img: ${qemu.detail}` : ''
    console.log(`${pad(row.test, 26)}${pad(format, 7)}${verdicts.map((v) => pad(v.status, 9) + pad(v.seconds === undefined ? '' : v.seconds.toFixed(1), 6)).join('')}${detail}`)
  }
}
const minutes = ((Date.now() - started) / 60000).toFixed(1)
if (tools.includes('qemu') && tools.includes('qimg')) {
  console.log(`\nqimg passes ${bothPass} of the ${baselinePasses} tests that pass with qemu-img (${qimgPasses} passes in all); ${minutes} min`)
} else {
  // Every listed test and format passes with qemu-img 7.2 here (how tests.tsv was made).
  console.log(`\n${tools[0]} passes ${tools.includes('qimg') ? qimgPasses : baselinePasses} of the ${total} runs that pass with qemu-img; ${minutes} min`)
}
if (failures.length > 0) console.log(`qimg failed: ${failures.join(' ')}`)
if (tools.includes('qimg')) console.log(`iotests: ${qimgPasses} passed, ${failures.length} failed`)
// The CI subset holds tests qimg passes: any failure there is a regression.
if (values.subset !== undefined && failures.length > 0) process.exit(1)
