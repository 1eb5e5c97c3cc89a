// qemu-img's -o option lists (each format's from its module): parsing, validation, `-o help`, and the
// "Formatting '…', fmt=… k=v …" line create prints.
import { ImageError } from '../errors.js'
import { parseOptionString } from './image-opts.js'
import { parseBool, parseOptionNumber, parseOptionSize } from '../format/option-values.js'
import type { CreateOptionDesc } from '../format/module.js'
import { SIZE_OPTION } from '../format/create-options.js'
import { findFormatModule } from '../formats.js'

export { parseBool, parseOptionNumber, parseOptionSize }

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
