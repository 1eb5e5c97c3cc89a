// Starting NBD servers (qimg nbd and qemu-nbd) as child processes for oracle tests: ready
// once the pid file appears (both write it after they listen), stopped in after hooks.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, watch } from 'node:fs'
import { dirname } from 'node:path'
import { QIMG } from '../helpers/oracle.js'

export interface RunningServer {
  child: ChildProcess
  stderr: () => string
  /** The exit code (or signal) once the server ends by itself. */
  exited: Promise<number | string>
  /** SIGTERM (or `signal`) and wait for the exit; resolves to the exit code (or the signal). */
  stop(signal?: NodeJS.Signals): Promise<number | string>
}

/** Starts `tool` ('qimg' or 'qemu-nbd') with `args`; resolves once it serves. */
export async function startServer(tool: 'qimg' | 'qemu-nbd', args: readonly string[], pidFile: string): Promise<RunningServer> {
  const dir = dirname(pidFile)
  const watcher = watch(dir)
  const command = tool === 'qimg' ? process.execPath : 'qemu-nbd'
  const argv = tool === 'qimg' ? [QIMG, 'nbd', '--pid-file', pidFile, ...args] : ['--pid-file', pidFile, ...args]
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  try {
    await new Promise<void>((resolve, reject) => {
      const check = () => { if (existsSync(pidFile)) resolve() }
      watcher.on('change', check)
      check()
      void exited.then((code) => reject(new Error(`${tool} exited (${code}) before serving: ${stderr}`)))
    })
  } finally {
    watcher.close()
  }
  return {
    child,
    stderr: () => stderr,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
}
