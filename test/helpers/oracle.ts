// Running the oracle tools (qemu-img, qemu-io, qemu-nbd, nbdinfo) and qimg itself from tests.
// A missing tool skips the test with a visible reason locally, and fails it under CI.
import { execFile, execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { after, before, type TestContext } from 'node:test'

const execFileAsync = promisify(execFile)

/** Path of the qimg CLI script. */
export const QIMG = resolve(import.meta.dirname, '../../../bin/qimg.js')

const available = new Map<string, boolean>()

/** Whether `tool` is on PATH. */
export function hasTool(tool: string): boolean {
  let yes = available.get(tool)
  if (yes === undefined) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
      yes = true
    } catch {
      yes = false
    }
    available.set(tool, yes)
  }
  return yes
}

/**
 * Returns true when the tools are there. Otherwise skips the test (locally) or throws (CI).
 * Use: `if (!needTools(t, 'qemu-img')) return`.
 */
export function needTools(t: TestContext, ...tools: string[]): boolean {
  const missing = tools.filter((tool) => !hasTool(tool))
  if (missing.length === 0) return true
  if (process.env.CI) throw new Error(`oracle tool(s) missing under CI: ${missing.join(', ')}`)
  t.skip(`oracle tool(s) not installed: ${missing.join(', ')} (apt-get install qemu-utils libnbd-bin)`)
  return false
}

/** Result of a finished process. */
export interface RunResult { stdout: string; stderr: string; code: number }

/**
 * qemu-img's LUKS code times PBKDF2 with the thread's CPU clock and gives up now and then on a busy
 * machine. Nothing was written when it says so: such a run is repeated (by {@link run}).
 */
const QEMU_PBKDF_FLAKE = 'Unable to get accurate CPU usage'

/** Where and how a program runs: `env` entries are added to this process's environment. */
export interface RunOptions { cwd?: string; input?: string; env?: Record<string, string> }

/** Runs a program to completion, never throwing on a non-zero exit (see QEMU_PBKDF_FLAKE). */
export async function run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  for (let attempt = 1; ; attempt++) {
    const r = await runOnce(program, args, options)
    if (r.code === 0 || attempt === 8 || !r.stderr.includes(QEMU_PBKDF_FLAKE)) return r
  }
}

async function runOnce(program: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  try {
    const running = execFileAsync(program, args, { cwd: options.cwd, env: options.env ? { ...process.env, ...options.env } : process.env, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' })
    // `input` is the whole of standard input: the child sees its end (else the pipe stays open).
    if (options.input !== undefined) running.child.stdin?.end(options.input)
    const { stdout, stderr } = await running
    return { stdout, stderr, code: 0 }
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number | string }
    if (typeof err.code !== 'number') throw e
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: err.code }
  }
}

/** Runs a program and throws with its stderr unless it exits 0. */
export async function runOk(program: string, args: readonly string[], options: { cwd?: string } = {}): Promise<string> {
  const r = await run(program, args, options)
  if (r.code !== 0) throw new Error(`${program} ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** Runs the qimg CLI. */
export function qimg(args: readonly string[], options: Omit<RunOptions, 'input'> = {}): Promise<RunResult> {
  return run(process.execPath, [QIMG, ...args], options)
}

/** Runs the qimg CLI in this process (the same code as bin/qimg.js, without a process start). */
export async function qimgInProcess(args: readonly string[]): Promise<RunResult> {
  const { run: runCli } = await import('../../src/cli/main.js')
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, { out: (text) => { stdout += text }, err: (text) => { stderr += text } })
  return { stdout, stderr, code }
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'qimg-test-'): { path: string; file(name: string): string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return { path, file: (name) => join(path, name), cleanup: () => rmSync(path, { recursive: true, force: true }) }
}

/** The work directory an oracle test file shares between its tests. */
export interface SharedWorkDir {
  /** The temporary root (the work directory is `work` below it; other folders may sit beside). */
  root: string
  dir: string
  at(name: string): string
  /** Whether `setup` ran: tests assert it once needTools let them run. */
  ready(): boolean
  /** The link to qimg named `tool` (qemu-img, qemu-io): qimg answers as that tool through it. */
  linked(tool: string): string
}

/**
 * Makes a work directory before a test file's tests with `setup` (run only when qemu-img and
 * qemu-io are installed: it uses them), with links to qimg named as `links` (bin/ beside it),
 * and removes it after them.
 */
export function sharedWorkDir(prefix: string, setup: (dir: string) => Promise<void>, links: readonly string[] = []): SharedWorkDir {
  const root = tempDir(prefix)
  const dir = join(root.path, 'work')
  const linked = (tool: string): string => join(root.path, 'bin', tool)
  let done = false
  before(async () => {
    if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
    mkdirSync(dir)
    mkdirSync(join(root.path, 'bin'))
    for (const tool of links) symlinkSync(QIMG, linked(tool))
    await setup(dir)
    done = true
  })
  after(() => root.cleanup())
  return { root: root.path, dir, at: (name) => join(dir, name), ready: () => done, linked }
}

/** _filter_qemu_io: the statistics line, -C's line, and the prompts. */
export function filterQemuIo(text: string): string {
  return text
    .replace(/[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*\/sec and [0-9/.inf]* ops\/sec\)/g, 'X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)')
    .replace(/(\d+),(\d+),\d+:\d\d:\d\d\.\d\d,[\d.inf]+,[\d.inf]+$/gm, '$1,$2,TIME,RATE,RATE')
}
