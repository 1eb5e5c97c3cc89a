// Block-graph options as one flat map of dotted keys ("file.driver", "backing.file.filename",
// "inject-error.0.event"), the form QEMU's block layer works on (qdict_flatten): json: file names
// and --image-opts strings both become this map, so both syntaxes describe the same tree.
import { ImageError } from '../errors.js'

/** One option value: strings from --image-opts, any JSON scalar from json:. */
export type OptionScalar = string | number | boolean | null

/** Dotted key → value, in the order given. */
export type FlatOptions = Map<string, OptionScalar>

/** QEMU's qdict_flatten: nested objects become "a.b", arrays "a.0". */
export function flattenOptions(value: unknown, key = '', into: FlatOptions = new Map()): FlatOptions {
  const join = (name: string | number): string => (key === '' ? String(name) : `${key}.${name}`)
  if (Array.isArray(value)) value.forEach((item, i) => flattenOptions(item, join(i), into))
  else if (value !== null && typeof value === 'object') for (const [name, item] of Object.entries(value)) flattenOptions(item, join(name), into)
  else if (!into.has(key)) into.set(key, value as OptionScalar)
  return into
}

/** The options under `prefix.` with the prefix taken off (QEMU's qdict_extract_subqdict). */
export function subOptions(options: FlatOptions, prefix: string): FlatOptions {
  const sub: FlatOptions = new Map()
  const dotted = prefix + '.'
  for (const [key, value] of options) if (key.startsWith(dotted)) sub.set(key.slice(dotted.length), value)
  return sub
}

/** True when any key is `prefix` or lies under `prefix.`. */
export function hasOption(options: FlatOptions, prefix: string): boolean {
  for (const key of options.keys()) if (key === prefix || key.startsWith(prefix + '.')) return true
  return false
}

/** The option as a string (numbers and booleans as QEMU's qdict_get_try_str would refuse them: as text). */
export function stringValue(options: FlatOptions, key: string): string | undefined {
  const value = options.get(key)
  return value === undefined || value === null ? undefined : String(value)
}

/** A QEMU_OPT_BOOL value: on/off (also true/false from JSON). */
export function boolValue(options: FlatOptions, key: string): boolean | undefined {
  const value = options.get(key)
  if (value === undefined) return undefined
  if (value === true || value === 'on') return true
  if (value === false || value === 'off') return false
  throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects 'on' or 'off'`)
}

/** A QEMU_OPT_NUMBER value. */
export function numberValue(options: FlatOptions, key: string, name = key): number | undefined {
  const value = options.get(key)
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isInteger(value)) return value
  if (typeof value === 'string' && /^-?(0x[0-9a-f]+|\d+)$/i.test(value)) return Number(value)
  throw new ImageError('INVALID_ARGUMENT', `Parameter '${name}' expects a number`)
}

/** A QEMU_OPT_SIZE value: a number with an optional k/M/G/T/P/E suffix. */
export function sizeValue(options: FlatOptions, key: string): number | undefined {
  const value = options.get(key)
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value
  const match = typeof value === 'string' ? /^(\d+)([kKMGTPE]?)$/.exec(value) : null
  if (!match) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.`)
  const shift = ' KMGTPE'.indexOf(match[2]!.toUpperCase() || ' ')
  return Number(match[1]) * 2 ** (10 * shift)
}
