// QEMU's JSON text writer (qobject/json-writer.c) with QDict member order, for byte-exact --output=json.
import { ImageError } from '../errors.js'

/** A JSON value as QEMU's QObject model holds it; `undefined` object members are omitted. */
export type QValue = null | boolean | number | bigint | string | QValue[] | { [key: string]: QValue | undefined }

/** Number of hash buckets in a QEMU QDict (qobject/qdict.c QDICT_BUCKET_MAX). */
const QDICT_BUCKETS = 512

/** The code points of `text`; a lone surrogate becomes U+FFFD, as invalid UTF-8 does in QEMU. */
function codePoints(text: string): number[] {
  const points: number[] = []
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0xfffd
    points.push(cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp)
  }
  return points
}

/** The UTF-8 encoding of `text` (lone surrogates encoded as U+FFFD). */
export function utf8Bytes(text: string): number[] {
  const bytes: number[] = []
  for (const cp of codePoints(text)) {
    if (cp < 0x80) bytes.push(cp)
    else if (cp < 0x800) bytes.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f))
    else if (cp < 0x10000) bytes.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f))
    else bytes.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f))
  }
  return bytes
}

/** QEMU's tdb_hash (qobject/qdict.c) over the UTF-8 bytes of `key`, as an unsigned 32-bit value. */
export function tdbHash(key: string): number {
  const bytes = utf8Bytes(key)
  let value = Math.imul(0x238f13af, bytes.length) >>> 0
  bytes.forEach((byte, i) => {
    value = (value + ((byte << ((i * 5) % 24)) >>> 0)) >>> 0
  })
  return (Math.imul(1103515243, value) + 12345) >>> 0
}

/**
 * The keys of `object` (undefined members skipped) in the order QEMU iterates a QDict built by
 * inserting them in JS key order: bucket `tdbHash(key) % 512` ascending, and within one bucket
 * the most recently inserted key first.
 */
export function qdictKeys(object: { [key: string]: QValue | undefined }): string[] {
  const entries = Object.keys(object)
    .filter((key) => object[key] !== undefined)
    .map((key, insertion) => ({ key, insertion, bucket: tdbHash(key) % QDICT_BUCKETS }))
  entries.sort((a, b) => a.bucket - b.bucket || b.insertion - a.insertion)
  return entries.map((entry) => entry.key)
}

/** `text` as a QEMU JSON string literal (quotes included). */
export function quoteString(text: string): string {
  let out = '"'
  for (const cp of codePoints(text)) {
    switch (cp) {
      case 0x22: out += '\\"'; break
      case 0x5c: out += '\\\\'; break
      case 0x08: out += '\\b'; break
      case 0x0c: out += '\\f'; break
      case 0x0a: out += '\\n'; break
      case 0x0d: out += '\\r'; break
      case 0x09: out += '\\t'; break
      default:
        if (cp > 0xffff) {
          out += unicodeEscape(0xd800 + ((cp - 0x10000) >> 10)) + unicodeEscape(0xdc00 + ((cp - 0x10000) & 0x3ff))
        } else if (cp < 0x20 || cp >= 0x7f) {
          out += unicodeEscape(cp)
        } else {
          out += String.fromCodePoint(cp)
        }
    }
  }
  return out + '"'
}

/** `\uXXXX` with upper-case hex, as QEMU prints it (`\\u%04X`). */
function unicodeEscape(unit: number): string {
  return '\\u' + unit.toString(16).toUpperCase().padStart(4, '0')
}

/** Appends values to a buffer the way json-writer.c does: commas, newlines and indentation. */
class Writer {
  text = ''
  private depth = 0
  private needComma = false
  constructor(private readonly pretty: boolean) {}

  private newline(): void {
    if (this.pretty) this.text += '\n' + ' '.repeat(this.depth * 4)
  }

  /** json-writer.c maybe_comma_name: separator before a member, then its name inside objects. */
  private member(name: string | undefined): void {
    if (this.needComma) {
      this.text += ','
      if (this.pretty) this.newline()
      else this.text += ' '
    } else {
      if (this.text.length > 0) this.newline()
      this.needComma = true
    }
    if (name !== undefined) this.text += quoteString(name) + ': '
  }

  write(name: string | undefined, value: QValue): void {
    this.member(name)
    if (value === null) {
      this.text += 'null'
    } else if (typeof value === 'boolean') {
      this.text += value ? 'true' : 'false'
    } else if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) {
        throw new ImageError('INVALID_ARGUMENT', `JSON number ${value} is not a safe integer`)
      }
      this.text += String(value)
    } else if (typeof value === 'bigint') {
      this.text += value.toString()
    } else if (typeof value === 'string') {
      this.text += quoteString(value)
    } else if (Array.isArray(value)) {
      this.text += '['
      this.enter()
      for (const element of value) this.write(undefined, element)
      this.leave(']')
    } else {
      this.text += '{'
      this.enter()
      for (const key of qdictKeys(value)) this.write(key, value[key] as QValue)
      this.leave('}')
    }
  }

  private enter(): void {
    this.depth++
    this.needComma = false
  }

  private leave(close: string): void {
    this.depth--
    this.needComma = true
    this.newline()
    this.text += close
  }
}

/**
 * Serialises `value` exactly as QEMU's qobject_to_json_pretty (or qobject_to_json when `pretty`
 * is false) would, with object members in QDict order. No trailing newline.
 * Throws INVALID_ARGUMENT for numbers that are not safe integers.
 */
export function toQemuJson(value: QValue, pretty = true): string {
  const writer = new Writer(pretty)
  writer.write(undefined, value)
  return writer.text
}
