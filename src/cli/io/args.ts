// The argument parsing every qemu-io command shares: glibc getopt (permuting, messages on stderr
// as "CMD: invalid option -- 'x'"), cvtnum (qemu_strtosz) and pattern bytes, with qemu-io's texts.
import { parseSize } from '../size.js'
import type { Session } from './session.js'

/** errno values qemu-io commands return (negative) and report. */
export const EINVAL = 22
export const ERANGE = 34

/**
 * glibc getopt(3) over a command's words: options are read in order (clusters, values attached
 * or in the next word), operands may come first (they are permuted to the end), "--" ends
 * options. An unknown option or a missing value is reported on stderr and read as '?'.
 */
export class CommandOptions {
  readonly operands: string[] = []
  readonly #words: readonly string[]
  readonly #spec: string
  readonly #session: Session
  #index = 1
  #cluster = ''

  constructor(session: Session, words: readonly string[], spec: string) {
    this.#session = session
    this.#words = words
    this.#spec = spec
  }

  /** The next option as [letter, value] ('?' after an error), or undefined at the end. */
  next(): [string, string] | undefined {
    while (this.#cluster === '') {
      const word = this.#words[this.#index]
      if (word === undefined) return undefined
      this.#index++
      if (word === '--') {
        this.operands.push(...this.#words.slice(this.#index))
        this.#index = this.#words.length
        return undefined
      }
      if (word.startsWith('-') && word.length > 1) this.#cluster = word.slice(1)
      else this.operands.push(word)
    }
    const letter = this.#cluster[0]!
    this.#cluster = this.#cluster.slice(1)
    const at = this.#spec.indexOf(letter)
    const command = this.#words[0]!
    if (letter === ':' || at < 0) {
      this.#session.err(`${command}: invalid option -- '${letter}'\n`)
      return ['?', '']
    }
    if (this.#spec[at + 1] !== ':') return [letter, '']
    if (this.#cluster !== '') {
      const value = this.#cluster
      this.#cluster = ''
      return [letter, value]
    }
    const value = this.#words[this.#index]
    if (value === undefined) {
      this.#session.err(`${command}: option requires an argument -- '${letter}'\n`)
      return ['?', '']
    }
    this.#index++
    return [letter, value]
  }

  /** Reads the remaining options (after the caller's loop stopped early, operands are complete). */
  rest(): string[] {
    while (this.next() !== undefined);
    return this.operands
  }
}

/** qemu-io's cvtnum: a size (suffixes, 0x), or a negative errno (-EINVAL, -ERANGE). */
export function cvtnum(text: string): number {
  try {
    return parseSize(text)
  } catch (e) {
    return (e as Error).message.includes('too large') ? -ERANGE : -EINVAL
  }
}

/** print_cvtnum_err: the message for a cvtnum failure. */
export function cvtnumError(code: number, text: string): string {
  if (code === -EINVAL) return `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}\n`
  if (code === -ERANGE) return `Parsing error: argument too large -- ${text}\n`
  return `Parsing error: ${text}\n`
}

/** cvtnum with print_cvtnum_err: the size, or the negative errno after printing why not. */
export function sizeArgument(session: Session, text: string): number {
  const value = cvtnum(text)
  if (value < 0) session.out(cvtnumError(value, text))
  return value
}

/** strtol(text, &end, 0) over the whole text: decimal, 0x hexadecimal or 0 octal; NaN otherwise. */
export function strtolWhole(text: string): number {
  if (text.trim() === "") return 0 // strtol reads nothing and the end pointer is already at the end
  const match = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text)
  if (!match) return Number.NaN
  const digits = match[2]!
  const value = /^0[xX]/.test(digits) ? Number.parseInt(digits.slice(2), 16) : digits.startsWith('0') ? Number.parseInt(digits, 8) : Number.parseInt(digits, 10)
  return match[1] === '-' ? -value : value
}

/** parse_pattern: a byte for memset, or -1 after printing why not. */
export function parsePattern(session: Session, text: string): number {
  const value = strtolWhole(text)
  if (!(value >= 0 && value <= 255)) {
    session.out(`${text} is not a valid pattern byte\n`)
    return -1
  }
  return value
}

/** create_iovec's checks: the lengths of a vectored request, or undefined after printing why not. */
export function vectorLengths(session: Session, texts: readonly string[], maxBytes: number): number[] | undefined {
  const lengths: number[] = []
  let total = 0
  for (const text of texts) {
    const length = sizeArgument(session, text)
    if (length < 0) return undefined
    if (length > maxBytes) {
      session.out(`Argument '${text}' exceeds maximum size ${maxBytes}\n`)
      return undefined
    }
    if (total > maxBytes - length) {
      session.out(`The total number of bytes exceed the maximum size ${maxBytes}\n`)
      return undefined
    }
    lengths.push(length)
    total += length
  }
  return lengths
}
