// Progress on the command line: -p draws qemu-img's "    (NN.NN/100%)" line for people;
// --progress=json (or QIMG_PROGRESS=json) writes one JSON object a line to standard error for
// programs — phase, bytes done and total, overall percent, seconds elapsed — at most five times
// a second, plus each phase's first and last; SIGUSR1 prints the percentage as qemu-img's does
// ("    (NN.NN/100%)" and a newline on standard error, util/qemu-progress.c sigusr_print).
import { ImageError } from '../errors.js'
import type { PhasePlace, ProgressMeter } from '../commands/progress-meter.js'
import type { CliContext } from './context.js'
import type { OptionSpec, Parsed } from './getopt.js'

/** The long option every progress-reporting command takes. */
export const PROGRESS_SPEC: OptionSpec = {
  long: 'progress', value: true, key: 'progress-mode',
  check: (v) => { if (v !== 'json' && v !== 'human') throw new ImageError('INVALID_ARGUMENT', `--progress must be used with human or json as argument.`) },
}

/** Interval between JSON lines of one phase. */
const JSON_INTERVAL_MS = 200

/** A progress meter for a command line, and how to end it. */
export interface CliProgress {
  meter: ProgressMeter
  /** Stops reporting (the signal handler removed); safe to call twice. */
  dispose(): void
}

/** How a command wants its progress shown. */
export interface ProgressRequest {
  /** -p given (and not -q): draw qemu-img's line. */
  bar: boolean
  /** The line goes to standard error (the output is standard output). */
  barToStderr?: boolean
}

/** Whether JSON progress was asked for (option or environment). */
export function wantsJson(parsed: Parsed): boolean {
  const mode = parsed.options.get('progress-mode')
  if (mode === 'json') return true
  if (mode === 'human') return false
  return process.env['QIMG_PROGRESS'] === 'json'
}

/** The meter a command reports to: bar, JSON, SIGUSR1, as asked. */
export function cliProgress(parsed: Parsed, ctx: CliContext, request: ProgressRequest): CliProgress {
  const json = wantsJson(parsed)
  const bar = request.bar || parsed.options.get('progress-mode') === 'human'
  const barOut = request.barToStderr ? ctx.err : ctx.out
  const started = Date.now()
  let name = ''
  let total = 0
  let done = 0
  let place: PhasePlace = { index: 0, count: 1 }
  let lastJson = 0
  let lastBar = -1
  const percent = (): number => {
    const local = total === 0 ? (done > 0 ? 1 : 0) : Math.min(1, done / total)
    return Math.min(100, ((place.index + local) / place.count) * 100)
  }
  const jsonLine = (): void => {
    lastJson = Date.now()
    ctx.err(JSON.stringify({ phase: name, done, total, percent: Math.round(percent() * 100) / 100, elapsed: (lastJson - started) / 1000 }) + '\n')
  }
  const drawBar = (force = false): void => {
    const p = percent()
    if (!force && Math.floor(p) === lastBar) return
    lastBar = Math.floor(p)
    barOut(`    (${p.toFixed(2)}/100%)\r`)
  }
  const onSignal = (): void => {
    if (json) jsonLine()
    else ctx.err(`    (${percent().toFixed(2)}/100%)\n`)
  }
  process.on('SIGUSR1', onSignal)
  let disposed = false
  const meter: ProgressMeter = {
    phase(phaseName, phaseTotal, phasePlace) {
      if (json && name !== '') jsonLine()
      name = phaseName
      total = phaseTotal
      done = 0
      place = phasePlace ?? { index: 0, count: 1 }
      if (json) jsonLine()
      if (bar) drawBar(lastBar < 0)
    },
    add(bytes) {
      done += bytes
      if (json && Date.now() - lastJson >= JSON_INTERVAL_MS) jsonLine()
      if (bar) drawBar()
    },
    end() {
      if (disposed) return
      if (total > 0 || name !== '') done = Math.max(done, total)
      place = { index: place.count - 1, count: place.count }
      if (json) jsonLine()
      if (bar) barOut('    (100.00/100%)\r\n')
      stop()
    },
  }
  const stop = (): void => {
    if (disposed) return
    disposed = true
    process.off('SIGUSR1', onSignal)
  }
  return { meter, dispose: stop }
}
