// Sizes as qemu-img reads them (qemu_strtosz): a number with an optional suffix B, K, M, G,
// T, P, E (powers of 1024, either case); fractions only with a suffix.
import { ImageError } from '../errors.js'

const SUFFIXES = 'BKMGTPE'

/** Parses `text` into bytes; `defaultSuffix` applies to bare numbers (qemu-img uses B). */
export function parseSize(text: string, defaultSuffix = 'B'): number {
  const match = /^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]?)$/.exec(text)
  if (!match) throw new ImageError('INVALID_ARGUMENT', `invalid size '${text}'`)
  const numberText = match[1]!
  const suffix = (match[2] || defaultSuffix).toUpperCase()
  const power = SUFFIXES.indexOf(suffix)
  if (power < 0) throw new ImageError('INVALID_ARGUMENT', `invalid size suffix in '${text}'`)
  if (numberText.includes('.') && !match[2]) throw new ImageError('INVALID_ARGUMENT', `invalid size '${text}': fractions need a suffix`)
  const value = Number(numberText) * 1024 ** power
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) throw new ImageError('INVALID_ARGUMENT', `size '${text}' is too large`)
  return Math.floor(value)
}
