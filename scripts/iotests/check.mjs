// Runs QEMU's `check` script for one tool and one image format, and reads back each test's
// verdict and, for a failure, the first line where its output differs from the reference.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const VERDICT = /^(\S+)\s+(pass|fail|not run)\s+\[/

/** The reference output `check` compares with (testrunner.find_reference, cache mode writeback). */
function referenceFile(testsDir, test, format) {
  for (const name of [`${test}.out.${format}`, `${test}.pc.out`, `${test}.out`]) {
    const file = path.join(testsDir, name)
    if (existsSync(file)) return file
  }
  return undefined
}

/** The first line where `bad` departs from `reference`, as "-expected / +actual". */
export function firstDifference(reference, bad) {
  const want = reference.split('\n')
  const got = bad.split('\n')
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i] !== got[i]) {
      const shown = (line) => (line === undefined ? '(end of output)' : line.length > 110 ? line.slice(0, 107) + '...' : line)
      return `line ${i + 1}: -${shown(want[i])} +${shown(got[i])}`
    }
  }
  return ''
}

/**
 * Runs `tests` under `checkDir` (the tree's tests/qemu-iotests) for `format`. Resolves to a map
 * test → { status: 'pass'|'fail'|'not run', detail }.
 */
export function runCheck({ checkDir, srcDir, workDir, tag, format, tests, jobs, timeoutSeconds, onLine }) {
  const testDir = path.join(workDir, `scratch-${tag}-${format}`)
  rmSync(testDir, { recursive: true, force: true })
  mkdirSync(testDir, { recursive: true })
  // Unix socket paths must stay short: a fresh directory under the system's temp dir.
  const sockDir = mkdtempSync(path.join(tmpdir(), `iot-${tag}-`))
  const env = { ...process.env, TEST_DIR: testDir, SOCK_DIR: sockDir }
  // The tools come from the tree; variables naming others would override it.
  for (const name of ['QEMU_PROG', 'QEMU_IMG_PROG', 'QEMU_IO_PROG', 'QEMU_NBD_PROG', 'QSD_PROG']) delete env[name]
  const args = [path.join(checkDir, 'check'), `-${format}`, '--color', 'off', '-j', String(jobs), ...tests]
  return new Promise((resolve, reject) => {
    const child = spawn('python3', args, { cwd: checkDir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    const results = new Map()
    let pending = ''
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutSeconds * 1000)
    child.stdout.on('data', (chunk) => {
      pending += chunk.toString('utf8')
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        // Without -j, check rewrites a line in place: '001 ...\r001 pass …'; the last part counts.
        const line = pending.slice(0, nl).split('\r').at(-1) ?? ''
        pending = pending.slice(nl + 1)
        const m = VERDICT.exec(line)
        if (m === null || !tests.includes(m[1])) continue
        const status = m[2]
        const description = line.replace(/^.*?\]\s+\S*\s+\S*\s*/, '').trim()
        const seconds = /\]\s+\[[^\]]*\]\s+([0-9.]+)s/.exec(line)?.[1]
        let detail = status === 'not run' ? description : ''
        if (status === 'fail') {
          const name = m[1]
          const top = path.join(srcDir, 'tests', 'qemu-iotests')
          const ref = referenceFile(existsSync(path.join(top, name)) ? top : path.join(top, 'tests'), name, format)
          const badFile = [path.join(testDir, name, `${name}.out.bad`), path.join(testDir, `${name}.out.bad`)].find(existsSync)
          detail = ref && badFile ? firstDifference(readFileSync(ref, 'utf8'), readFileSync(badFile, 'utf8')) : description
          if (detail === '') detail = description
        }
        results.set(m[1], { status, detail, seconds: seconds === undefined ? undefined : Number(seconds) })
        onLine?.(m[1], status)
      }
    })
    child.stderr.on('data', (chunk) => { stderr += chunk.toString('utf8') })
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      rmSync(sockDir, { recursive: true, force: true })
      for (const test of tests) if (!results.has(test)) results.set(test, { status: 'fail', detail: `no verdict (check exited ${code}) ${stderr.split('\n').slice(-3).join(' ')}`.trim() })
      resolve(results)
    })
  })
}
