// Sizes as qemu-img's command line reads them: qemu_strtosz (format/size-text.ts) with the
// messages of the CLI's own size operands (cvtnum).
import { ImageError } from '../errors.js'
import { MAX_SIZE, strtosz } from '../format/size-text.js'

export { MAX_SIZE, strtosz, type StrtoszResult } from '../format/size-text.js'

/** Parses `text` into bytes as qemu_strtosz; throws INVALID_ARGUMENT when it refuses it. */
export function parseSize(text: string, defaultSuffix = 'B'): number {
  const result = strtosz(text, defaultSuffix)
  if (!result.ok) throw new ImageError('INVALID_ARGUMENT', result.error === 'range' ? `size '${text}' is too large` : `invalid size '${text}'`)
  if (result.value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageError('INVALID_ARGUMENT', `size '${text}' is too large`)
  return Number(result.value)
}

/**
 * qemu-img's cvtnum_full: a size named `what` ("image size") between `min` and `max`, with
 * qemu-img's two messages (the second line of the first is prefixed by the CLI's name).
 */
export function cvtnum(what: string, text: string, min = 0n, max = MAX_SIZE): number {
  const result = strtosz(text)
  if (!result.ok && result.error === 'invalid') {
    throw new ImageError('INVALID_ARGUMENT', `Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for\nqimg: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.`)
  }
  if (!result.ok || result.value > max || result.value < min) throw new ImageError('INVALID_ARGUMENT', `Invalid ${what} specified. Must be between ${min} and ${max}.`)
  // Sizes above 2^53 are not exact as numbers: qimg refuses them where it uses them.
  return Number(result.value)
}
