// qemu-img's -o option lists (each format's from its module): parsing, validation, `-o help`, and the
// "Formatting '…', fmt=… k=v …" line create prints.
import { ImageError } from '../errors.js'
import type { Qcow2CreateOptions, Preallocation } from '../qcow2/create.js'
import { parseOptionString } from './image-opts.js'
import { strtosz } from './size.js'
import type { CreateOptionDesc } from '../format/module.js'
import { SIZE_OPTION } from '../format/create-options.js'
import { findFormatModule } from '../formats.js'

/** How QEMU parses (and prints) an option's value. */
type OptionType = CreateOptionDesc['type']

/** One creation option as qemu-img lists it: name, type, help text, the default it prints. */
type OptionDesc = CreateOptionDesc

/** The file protocol's options, which follow the format's (duplicates skipped). */
const FILE_OPTIONS: OptionDesc[] = [
  SIZE_OPTION,
  { name: 'nocow', type: 'bool', help: 'Turn off copy-on-write (valid only on btrfs)' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, falloc, full)' },
  { name: 'extent_size_hint', type: 'size', help: 'Extent size hint for the image file, 0 to disable' },
]

/** A format's own options, from its module. */
function ownOptions(format: string): readonly OptionDesc[] | undefined {
  return findFormatModule(format)?.createOptions
}

/** Every option a format accepts on a file: its own, then the file protocol's. */
function optionList(format: string): OptionDesc[] | undefined {
  const own = ownOptions(format)
  return own && [...own, ...FILE_OPTIONS.filter((f) => !own.some((o) => o.name === f.name))]
}

const TYPE_NAMES: Record<OptionType, string> = { size: 'size', number: 'num', bool: 'bool (on/off)', string: 'str' }

/** qemu_opts_print_help: one line per option, sorted by name, help text from column 24. */
function helpLines(options: readonly OptionDesc[]): string {
  return [...options].sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((o) => `  ${`${o.name}=<${TYPE_NAMES[o.type]}>`.padEnd(22)} - ${o.help}\n`).join('')
}

/** True when an -o string asks for help (`help` or `?` among its items). */
export function hasHelpOption(text: string): boolean {
  return text.split(',').some((item) => item === 'help' || item === '?')
}

/**
 * What `-o help` prints (as qemu-img 7.2 does): the format's options, or, when the target file
 * is named, the format's and the file protocol's options together.
 */
export function optionHelp(format: string, filename: string | undefined): string {
  const own = ownOptions(format)
  if (!own) throw new ImageError('INVALID_ARGUMENT', `Unknown file format '${format}'`)
  if (filename !== undefined) return 'Supported options:\n' + helpLines(optionList(format)!)
  return `Supported ${format} options:\n${helpLines(own)}\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n`
}

/** Parses an on/off value as QEMU's qapi bool parser does. */
export function parseBool(key: string, value: string): boolean {
  if (['on', 'yes', 'true', 'y'].includes(value)) return true
  if (['off', 'no', 'false', 'n'].includes(value)) return false
  throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects 'on' or 'off'`)
}

/**
 * QEMU's parse_option_number: decimal, 0x hexadecimal or 0 octal, through qemu_strtou64, which
 * (as strtoull) takes a minus sign and wraps: "-1" is 2^64 - 1. It is kept here as the int64
 * QEMU prints it as ("refcount_bits=-1" in the Formatting line); every range check refuses it.
 */
export function parseOptionNumber(key: string, value: string): number {
  const match = /^\s*(-?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(value)
  if (!match) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects a number`)
  const n = match[2] !== undefined ? Number.parseInt(match[2], 16) : match[3] !== undefined ? Number.parseInt(match[3], 8) : Number(match[4])
  return match[1] === '-' ? -n || 0 : n
}

/** QEMU's parse_option_size, with its message and hint. */
export function parseOptionSize(key: string, value: string): number {
  // Any size below 2^64 parses (QEMU's rule); one above 2^53 is inexact as a number, and
  // whatever uses it refuses it (qcow2 creation: too large for the format, or for qimg).
  const result = strtosz(value)
  if (result.ok) return Number(result.value)
  throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.`)
}

/**
 * Merges several -o strings (later ones win) into one key/value map, checking the names and the
 * syntax of sizes, numbers and booleans as qemu_opts_do_parse does.
 */
export function parseCreateOptions(format: string, texts: readonly string[]): Map<string, string> {
  const options = optionList(format)
  if (!options) throw new ImageError('INVALID_ARGUMENT', `Unknown file format '${format}'`)
  const merged = new Map<string, string>()
  for (const text of texts) {
    for (const [key, value] of parseOptionString(text)) {
      const desc = options.find((o) => o.name === key)
      if (!desc) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${key}'`)
      if (desc.type === 'bool') parseBool(key, value)
      else if (desc.type === 'number') parseOptionNumber(key, value)
      else if (desc.type === 'size') parseOptionSize(key, value)
      merged.set(key, value)
    }
  }
  return merged
}

/** Turns a qcow2 option map into create options (size comes separately), as qcow2_co_create_opts does. */
export function toQcow2Options(opts: Map<string, string>, size: number): Qcow2CreateOptions {
  // QEMU hands the options to its QAPI creation code, whose names and messages these are.
  const choice = <T extends string>(key: string, qapiName: string, allowed: readonly T[]): T | undefined => {
    const v = opts.get(key)
    if (v !== undefined && !(allowed as readonly string[]).includes(v)) throw new ImageError('INVALID_ARGUMENT', `Parameter '${qapiName}' does not accept value '${v}'`)
    return v as T | undefined
  }
  const compat = choice('compat', 'version', ['0.10', 'v2', '1.1', 'v3'])
  const bool = (key: string) => (opts.has(key) ? parseBool(key, opts.get(key)!) : undefined)
  const refcountBits = opts.get('refcount_bits')
  return {
    size,
    compat: compat === undefined ? undefined : compat === 'v2' || compat === '0.10' ? '0.10' : '1.1',
    clusterSize: opts.has('cluster_size') ? parseOptionSize('cluster_size', opts.get('cluster_size')!) : undefined,
    refcountBits: refcountBits === undefined ? undefined : parseOptionNumber('refcount_bits', refcountBits),
    lazyRefcounts: bool('lazy_refcounts'),
    extendedL2: bool('extended_l2'),
    preallocation: choice<Preallocation>('preallocation', 'preallocation', ['off', 'metadata', 'falloc', 'full']),
    backingFile: opts.get('backing_file'),
    backingFormat: opts.get('backing_fmt'),
    compressionType: choice('compression_type', 'compression-type', ['zlib', 'zstd']),
    dataFile: opts.get('data_file'),
    dataFileRaw: bool('data_file_raw'),
  }
}

/** The preallocation of a raw image (file-posix's checks and messages). */
export function rawPreallocation(opts: Map<string, string>): 'off' | 'falloc' | 'full' {
  const mode = opts.get('preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(mode)) throw new ImageError('INVALID_ARGUMENT', `invalid parameter value: ${mode}`)
  if (mode === 'metadata') throw new ImageError('INVALID_ARGUMENT', `Unsupported preallocation mode: ${mode}`)
  return mode as 'off' | 'falloc' | 'full'
}

/** QEMU doubles commas inside option values when printing them. */
function value(text: string): string {
  return text.replaceAll(',', ',,')
}

/**
 * The line `qemu-img create` prints (without the trailing newline): every option that is set or
 * has a default, in the option list's order; sizes and numbers as numbers, the rest as given.
 */
export function formattingLine(filename: string, format: string, opts: Map<string, string>, size: number): string {
  const parts: string[] = []
  for (const desc of optionList(format) ?? []) {
    // Sizes print as integers even above 2^53 (String(2 ** 60) would round the digits).
    const given = desc.name === 'size' ? BigInt(size).toString() : opts.get(desc.name)
    if (given === undefined) {
      if (desc.default !== undefined) parts.push(`${desc.name}=${desc.default}`)
      continue
    }
    const shown = desc.type === 'size' ? BigInt(parseOptionSize(desc.name, given))
      : desc.type === 'number' ? parseOptionNumber(desc.name, given)
      : value(given)
    parts.push(`${desc.name}=${shown}`)
  }
  return `Formatting '${filename}', fmt=${format} ${parts.join(' ')}`
}
