// qemu-io's reports: the two lines after an I/O command (print_report, timestr, -C's one-line
// form) and errno texts for failed requests ("read failed: Input/output error").
import { errnoText, isErrnoName } from '../../io/errno.js'
import { isImageError } from '../../errors.js'
import { cvtstr, printfFixed } from '../io-format.js'

/** A stopwatch over one request (clock_gettime(CLOCK_MONOTONIC) before and after). */
export function startTimer(): () => number {
  const started = process.hrtime.bigint()
  return () => Number(process.hrtime.bigint() - started) / 1e9
}

/** timestr: "SS.ss sec" under a second's whole part, else (or with -C) "H:MM:SS.ss". */
function timestr(seconds: number, verbose: boolean): string {
  const whole = Math.floor(seconds)
  const fraction = seconds - whole
  const secondsField = printfFixed((whole % 60) + fraction, 2).padStart(5, '0')
  if (verbose || whole > 0) return `${Math.floor(whole / 3600)}:${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}:${secondsField}`
  return `${printfFixed(fraction, 2).padStart(5, '0')} sec`
}

/** C's %f family prints an infinite quotient as "inf" (a zero time). */
function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? printfFixed(value, digits) : 'inf'
}

/** cvtstr of a rate that may be infinite. */
function rate(value: number): string {
  return Number.isFinite(value) ? cvtstr(value) : 'inf EiB'
}

/** print_report: "OP TOTAL/COUNT bytes at offset OFF" and the statistics line (or -C's line). */
export function report(op: string, seconds: number, offset: number, count: number, total: number, ops: number, machine: boolean): string {
  const time = timestr(seconds, machine)
  if (machine) return `${total},${ops},${time},${fixed(total / seconds, 3)},${fixed(ops / seconds, 3)}\n`
  return `${op} ${total}/${count} bytes at offset ${offset}\n${cvtstr(total)}, ${ops} ops; ${time} (${rate(total / seconds)}/sec and ${fixed(ops / seconds, 4)} ops/sec)\n`
}


/** The errno name QEMU's block layer would return for an error qimg threw. */
export function errnoOf(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause
  const own = (error as { code?: unknown } | undefined)?.code
  for (const code of [cause?.code, own]) if (isErrnoName(code)) return code
  if (!isImageError(error)) return 'EIO'
  switch (error.code) {
    case 'INVALID_ARGUMENT': return 'EINVAL'
    case 'UNSUPPORTED': return 'ENOTSUP'
    case 'READ_ONLY': return 'EPERM'
    default: return 'EIO' // out of range (blk_check_byte_request), corrupt metadata, short reads
  }
}

/** strerror of the errno an error stands for. */
export function strerror(error: unknown): string {
  return errnoText(errnoOf(error))
}
