// Progress on the command line: -p draws qemu-img's "    (NN.NN/100%)" line for people;
// --progress=json (or QIMG_PROGRESS=json) writes one JSON object a line to standard error for
// programs — phase, bytes done and total, overall percent, seconds elapsed — at most five times
// a second, plus each phase's first and last; SIGUSR1 prints the percentage as qemu-img's does
// ("    (NN.NN/100%)" and a newline on standard error, util/qemu-progress.c sigusr_print).
import { ImageError } from '../errors.js'
import type { PhasePlace, ProgressMeter } from '../commands/progress-meter.js'
import type { CliContext } from './context.js'
import { flag, type OptionSpec, type Parsed } from './getopt.js'
import { fixed2 } from './check-text.js'

/** The long option every progress-reporting command takes. */
export const PROGRESS_SPEC: OptionSpec = {
  long: 'progress', value: true, key: 'progress-mode',
  check: (v) => { if (v !== 'json' && v !== 'human') throw new ImageError('INVALID_ARGUMENT', `--progress must be used with human or json as argument.`) },
}

/** qemu-img's -p, beside {@link PROGRESS_SPEC} (qemu-img has no long form of it). */
export const BAR_SPEC: OptionSpec = { short: 'p', value: false, key: 'progress' }

/** Interval between JSON lines of one phase. */
const JSON_INTERVAL_MS = 200

/** A progress meter for a command line, and how to end it. */
export interface CliProgress {
  meter: ProgressMeter
  /**
   * Ends the output (qemu_progress_end: the bar's newline) and removes the signal handler; safe
   * to call twice. Commands whose verdict follows the last bar line (compare) call it after.
   */
  dispose(): void
}

/** How a command wants its progress shown. */
export interface ProgressRequest {
  /** -p given (and not -q): draw qemu-img's line. Default: -p and not -q. */
  bar?: boolean
  /** The line goes to standard error (the output is standard output). */
  barToStderr?: boolean
  /**
   * qemu_progress_init's min_skip: a line is drawn when the percentage moved by more than this
   * since the last one (1 for convert and commit, 2 for rebase and compare), or is 0 or 100.
   */
  minSkip?: number
  /**
   * end() draws qemu_progress_print(100, 0)'s line, drawn even after another 100 (default);
   * false for compare, whose 100 comes from its walk alone.
   */
  finalLine?: boolean
}

/** Whether JSON progress was asked for (option or environment). */
export function wantsJson(parsed: Parsed): boolean {
  const mode = parsed.options.get('progress-mode')
  if (mode === 'json') return true
  if (mode === 'human') return false
  return process.env['QIMG_PROGRESS'] === 'json'
}

/** The meter a command reports to: bar, JSON, SIGUSR1, as asked. */
export function cliProgress(parsed: Parsed, ctx: CliContext, request: ProgressRequest = {}): CliProgress {
  const json = wantsJson(parsed)
  const bar = (request.bar ?? (flag(parsed, 'progress') && !flag(parsed, 'quiet'))) || parsed.options.get('progress-mode') === 'human'
  const barOut = request.barToStderr ? ctx.err : ctx.out
  const minSkip = request.minSkip ?? 1
  const started = Date.now()
  let name = ''
  let total = 0
  let done = 0
  let place: PhasePlace = { index: 0, count: 1 }
  let lastJson = 0
  let lastPrint = 0
  let drawn = false
  let ended = false
  const percent = (): number => {
    if (ended) return 100
    const local = total === 0 ? (done > 0 ? 1 : 0) : Math.min(1, done / total)
    return Math.min(100, ((place.index + local) / place.count) * 100)
  }
  const jsonLine = (): void => {
    lastJson = Date.now()
    ctx.err(JSON.stringify({ phase: name, done, total, percent: Math.round(percent() * 100) / 100, elapsed: (lastJson - started) / 1000 }) + '\n')
  }
  // qemu_progress_print's rule: drawn on a move of more than min_skip, and always at 0 and 100.
  const drawBar = (): void => {
    const p = Math.fround(percent())
    if (drawn && p <= lastPrint + minSkip && p >= lastPrint - minSkip && p !== 0 && p !== 100) return
    drawn = true
    lastPrint = p
    barOut(`    (${fixed2(p)}/100%)\r`)
  }
  const onSignal = (): void => {
    if (json) jsonLine()
    else ctx.err(`    (${fixed2(Math.fround(percent()))}/100%)\n`)
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
      if (bar) drawBar()
    },
    add(bytes) {
      done += bytes
      if (json && Date.now() - lastJson >= JSON_INTERVAL_MS) jsonLine()
      if (bar) drawBar()
    },
    end() {
      if (ended || disposed) return
      ended = true
      done = Math.max(done, total)
      if (json) jsonLine()
      if (bar && request.finalLine !== false) drawBar()
    },
  }
  const dispose = (): void => {
    if (disposed) return
    disposed = true
    process.off('SIGUSR1', onSignal)
    if (drawn) barOut('\n')
  }
  return { meter, dispose }
}
