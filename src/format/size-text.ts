// Sizes as QEMU reads them: qemu_strtosz (util/cutils.c do_strtosz). A decimal
// integer (leading white space and '+' allowed, as strtoull takes them), or 0x hexadecimal; an
// optional fraction after '.', which needs a suffix other than B unless it is zero ("1024.0",
// "1.", "1.5G"; not ".5k", not "1.5", no exponent); one suffix B, K, M, G, T, P, E (powers of
// 1024, either case) right after the number; the fraction scaled and rounded half up to a byte.
// Pure: format modules parse their -o sizes with it, the CLI its size operands.

const SUFFIXES = 'BKMGTPE'
const U64_LIMIT = 1n << 64n
/** INT64_MAX: the largest size cvtnum takes. */
export const MAX_SIZE = (1n << 63n) - 1n

/** What qemu_strtosz makes of a text: bytes, or EINVAL ('invalid') / ERANGE ('range'). */
export type StrtoszResult = { ok: true; value: bigint } | { ok: false; error: 'invalid' | 'range' }

const invalid: StrtoszResult = { ok: false, error: 'invalid' }

/** qemu_strtosz over the whole text; `defaultSuffix` applies to a bare number. */
export function strtosz(text: string, defaultSuffix = 'B'): StrtoszResult {
  // strtoull: white space, a sign, digits (a '-' makes do_strtosz refuse the text).
  const integral = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)/.exec(text)
  if (!integral || integral[1] === '-') return invalid
  let value = BigInt(integral[2]!)
  let rest = text.slice(integral[0].length)
  // strtoull's ERANGE ends the parse there: anything after the digits makes it EINVAL.
  if (value >= U64_LIMIT) return rest === '' ? { ok: false, error: 'range' } : invalid
  let fraction = 0n  // 64.64 fixed point, as valf
  if (value === 0n && /^[xX]/.test(rest)) {
    const hex = /^[ \t\n\v\f\r]*\+?0[xX]([0-9a-fA-F]+)/.exec(text)
    if (!hex) return invalid
    value = BigInt(`0x${hex[1]}`)
    rest = text.slice(hex[0].length)
    if (value >= U64_LIMIT) return rest === '' ? { ok: false, error: 'range' } : invalid
    if (rest.startsWith('.')) return invalid
  } else if (rest.startsWith('.')) {
    // strtod from the '.': digits, maybe an exponent (refused); a lone '.' is skipped.
    const decimal = /^\.([0-9]+)([eE][+-]?[0-9]+)?/.exec(rest)
    if (!decimal) rest = rest.slice(1)
    else {
      if (decimal[2] !== undefined) return invalid
      fraction = BigInt(Math.trunc(Number(`0.${decimal[1]}`) * 2 ** 64))
      rest = rest.slice(decimal[0].length)
    }
  }
  let power = rest === '' ? -1 : SUFFIXES.indexOf(rest[0]!.toUpperCase())
  if (power >= 0) rest = rest.slice(1)
  else power = SUFFIXES.indexOf(defaultSuffix.toUpperCase())
  if (rest !== '') return invalid
  if (power === 0) return fraction === 0n ? { ok: true, value } : invalid
  const multiplier = 1024n ** BigInt(power)
  const scaled = fraction * multiplier
  // The whole bytes of the fraction, plus one when what is left is half a byte or more.
  const total = value * multiplier + (scaled >> 64n) + ((scaled >> 63n) & 1n)
  return total >= U64_LIMIT ? { ok: false, error: 'range' } : { ok: true, value: total }
}
