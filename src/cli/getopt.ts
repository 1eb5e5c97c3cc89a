// GNU getopt_long as qemu-img uses it: short options (clustered, value attached or next),
// long options (--x=v or --x v), options and operands in any order, "--" ends options.
import { ImageError } from '../errors.js'

/** An option: its short letter and/or long name, and whether it takes a value. */
export interface OptionSpec {
  short?: string
  long?: string
  value: boolean
  /** Key in the result; defaults to the long name, else the short letter. */
  key?: string
  /** Checks a value as it is parsed (qemu-img reports these inside its getopt loop, in order). */
  check?: (value: string) => void
}

/** Parsed command line: option values (last wins; repeated ones in `all`) and operands. */
export interface Parsed {
  options: Map<string, string | true>
  all: Map<string, (string | true)[]>
  /** Every option in command-line order (for commands whose actions apply in order). */
  order: { key: string; value: string | true }[]
  operands: string[]
}

/**
 * Parses `args` against `specs`; unknown options are an INVALID_ARGUMENT error, worded as glibc's
 * getopt does, or as qemu-img does (it reports bad options itself, naming the argument).
 */
export function getopt(args: readonly string[], specs: readonly OptionSpec[], messages: 'getopt' | 'qemu-img' = 'getopt'): Parsed {
  const bad = (text: string, arg: string, missing = false): ImageError => new ImageError('INVALID_ARGUMENT', messages === 'getopt' ? text
    : `${missing ? 'missing argument for option' : 'unrecognized option'} '${arg}'\nTry 'qimg --help' for more information`)
  const options = new Map<string, string | true>()
  const all = new Map<string, (string | true)[]>()
  const operands: string[] = []
  const order: { key: string; value: string | true }[] = []
  const set = (spec: OptionSpec, value: string | true) => {
    const key = spec.key ?? spec.long ?? spec.short!
    if (typeof value === 'string') spec.check?.(value)
    order.push({ key, value })
    options.set(key, value)
    all.set(key, [...(all.get(key) ?? []), value])
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--') {
      operands.push(...args.slice(i + 1))
      break
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      const name = arg.slice(2, eq < 0 ? undefined : eq)
      const spec = specs.find((s) => s.long === name)
      if (!spec) throw bad(`unrecognized option '${arg}'`, arg)
      if (spec.value) {
        if (eq >= 0) set(spec, arg.slice(eq + 1))
        else if (i + 1 < args.length) set(spec, args[++i]!)
        else throw bad(`option '${arg}' requires an argument`, arg, true)
      } else {
        if (eq >= 0) throw bad(`option '--${name}' doesn't allow an argument`, arg)
        set(spec, true)
      }
      continue
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!
        const spec = specs.find((s) => s.short === letter)
        if (!spec) throw bad(`invalid option -- '${letter}'`, arg)
        if (spec.value) {
          if (j + 1 < arg.length) set(spec, arg.slice(j + 1))
          else if (i + 1 < args.length) set(spec, args[++i]!)
          else throw bad(`option requires an argument -- '${letter}'`, arg, true)
          break
        }
        set(spec, true)
      }
      continue
    }
    operands.push(arg)
  }
  return { options, all, order, operands }
}

/** A string option's value, or undefined. */
export function stringOption(parsed: Parsed, key: string): string | undefined {
  const v = parsed.options.get(key)
  return typeof v === 'string' ? v : undefined
}

/** True when a flag was given. */
export function flag(parsed: Parsed, key: string): boolean {
  return parsed.options.has(key)
}
