// Sizes as qemu-img reads them (qemu_strtosz): a number with an optional suffix B, K, M, G,
// T, P, E (powers of 1024, either case); fractions only with a suffix; 0x hexadecimal; an
// optional leading '+'.
import { ImageError } from '../errors.js'

const SUFFIXES = 'BKMGTPE'

/** Parses `text` into bytes; `defaultSuffix` applies to bare numbers (qemu-img uses B). */
export function parseSize(text: string, defaultSuffix = 'B'): number {
  // Hexadecimal ("0x1000") is taken too, without fraction or suffix.
  const hexMatch = /^\s*\+?0[xX]([0-9a-fA-F]+)$/.exec(text)
  if (hexMatch) return checked(text, Number.parseInt(hexMatch[1]!, 16))
  const match = /^\s*\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]?)$/.exec(text)
  if (!match) throw new ImageError('INVALID_ARGUMENT', `invalid size '${text}'`)
  const numberText = match[1]!
  const suffix = (match[2] || defaultSuffix).toUpperCase()
  const power = SUFFIXES.indexOf(suffix)
  if (power < 0) throw new ImageError('INVALID_ARGUMENT', `invalid size suffix in '${text}'`)
  if (numberText.includes('.') && !match[2]) throw new ImageError('INVALID_ARGUMENT', `invalid size '${text}': fractions need a suffix`)
  return checked(text, Math.floor(Number(numberText) * 1024 ** power))
}

function checked(text: string, value: number): number {
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) throw new ImageError('INVALID_ARGUMENT', `size '${text}' is too large`)
  return value
}

const INT64_MAX = '9223372036854775807'

/**
 * qemu-img's cvtnum_full: a size between `min` and `max` (INT64_MAX by default), with its two
 * messages: one for text that is not a size, one for a value out of range.
 */
export function cvtnum(what: string, text: string, min = 0, max?: number): number {
  let value: number
  try {
    if (text.trim().startsWith('-')) throw new Error('negative') // qemu_strtosz takes no sign
    value = parseSize(text)
  } catch (e) {
    if (e instanceof ImageError && e.message.endsWith('is too large')) value = Number.POSITIVE_INFINITY
    else throw new ImageError('INVALID_ARGUMENT', `Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for\nqimg: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.`)
  }
  if (value < min || value > (max ?? Number.MAX_SAFE_INTEGER)) throw new ImageError('INVALID_ARGUMENT', `Invalid ${what} specified. Must be between ${min} and ${max ?? INT64_MAX}.`)
  return value
}
