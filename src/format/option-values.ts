// Option values as QEMU's QemuOpts parses them (util/qemu-option.c): on/off, numbers, sizes, with
// QEMU's messages. Pure: each format module reads its own -o options with these.
import { ImageError } from '../errors.js'
import { strtosz } from './size-text.js'

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
