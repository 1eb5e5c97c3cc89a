// Human-readable `info` / `snapshot -l` output, byte-exact with qemu-img 7.2 (block/qapi.c, util/cutils.c).
import type { ImageInfo, SnapshotInfo } from '../format/info.js'
import { formatSpecificToQValue } from './info-json.js'
import { qdictKeys, utf8Bytes, type QValue } from './qjson.js'

/** Exact decimal digits of a finite, non-negative double: value = digits × 10^-scale. */
function exactDecimal(x: number): { digits: string; scale: number } {
  let scale = 0
  let scaled = x
  while (!Number.isInteger(scaled)) {
    scaled *= 2 // exact for doubles
    scale++
  }
  return { digits: (BigInt(scaled) * 5n ** BigInt(scale)).toString(), scale }
}

/**
 * C's `printf("%.<precision>g", x)` (glibc: exact value, round half to even, trailing zeros
 * removed), for finite `x`.
 */
export function cFormatG(x: number, precision: number): string {
  const p = Math.max(precision, 1)
  if (x === 0) return Object.is(x, -0) ? '-0' : '0'
  const sign = x < 0 ? '-' : ''
  const { digits, scale } = exactDecimal(Math.abs(x))
  const trimmed = digits.replace(/^0+/, '')
  let exponent = trimmed.length - 1 - scale
  let kept = trimmed.slice(0, p).padEnd(p, '0')
  const rest = trimmed.slice(p)
  const first = rest.charCodeAt(0) - 48
  const roundUp = rest.length > 0 &&
    (first > 5 || (first === 5 && (/[1-9]/.test(rest.slice(1)) || (kept.charCodeAt(p - 1) - 48) % 2 === 1)))
  if (roundUp) {
    const bumped = (BigInt(kept) + 1n).toString()
    if (bumped.length > p) exponent++
    kept = bumped.slice(0, p)
  }
  const stripZeros = (s: string): string => s.replace(/\.?0+$/, '')
  if (exponent < -4 || exponent >= p) {
    const mantissa = p > 1 ? stripZeros(`${kept[0]}.${kept.slice(1)}`) : kept
    const e = Math.abs(exponent).toString().padStart(2, '0')
    return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${e}`
  }
  if (exponent >= 0) {
    const intPart = kept.slice(0, exponent + 1)
    const frac = kept.slice(exponent + 1)
    return sign + (frac.length > 0 ? stripZeros(`${intPart}.${frac}`) : intPart)
  }
  return sign + stripZeros(`0.${'0'.repeat(-exponent - 1)}${kept}`)
}

/** Binary exponent of frexp(x): 2^(e-1) <= x < 2^e for x > 0, and 0 for x = 0. */
function frexpExponent(x: number): number {
  let e = 0
  while (x >= 2 ** e) e++
  while (x > 0 && x < 2 ** (e - 1)) e--
  return e
}

const SIZE_SUFFIXES = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei']

/**
 * QEMU's size_to_str: `%0.3g` of bytes / 1024^i with a binary suffix, moving to the next unit
 * once the value would reach 1000 (`0 B`, `1e+03 KiB`, `0.977 MiB`, `1.12 MiB`, `1 GiB`).
 */
export function sizeToStr(bytes: number): string {
  const i = Math.trunc((frexpExponent(bytes / (1000 / 1024)) - 1) / 10)
  return `${cFormatG(bytes / 2 ** (i * 10), 3)} ${SIZE_SUFFIXES[i] ?? ''}B`
}

/** Pads `text` to `width` bytes of UTF-8 like C's `%-Ns` (left) or `%Ns` (right). */
function pad(text: string, width: number, left: boolean): string {
  const fill = ' '.repeat(Math.max(0, width - utf8Bytes(text).length))
  return left ? text + fill : fill + text
}

const two = (n: number): string => String(n).padStart(2, '0')

/** A snapshot date as glib formats `%Y-%m-%d %H:%M:%S` in local time (honours TZ). */
export function formatDate(dateSec: number): string {
  const d = new Date(dateSec * 1000)
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
}

/** A snapshot's VM clock as `HH:MM:SS.mmm` (hours not wrapped, as bdrv_snapshot_dump prints). */
export function formatVmClock(vmClockSec: number, vmClockNsec: number): string {
  const secs = vmClockSec + Math.floor(vmClockNsec / 1e9)
  const ms = Math.floor(vmClockNsec / 1e6) % 1000
  return `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.` +
    String(ms).padStart(3, '0')
}

/** bdrv_snapshot_dump(NULL): the column header, without newline. */
const SNAPSHOT_HEADER =
  pad('ID', 10, true) + pad('TAG', 17, true) + pad('VM SIZE', 8, false) +
  pad('DATE', 20, false) + pad('VM CLOCK', 13, false) + pad('ICOUNT', 11, false)

/** bdrv_snapshot_dump(sn): one row, without newline. */
function snapshotRow(sn: SnapshotInfo): string {
  return pad(sn.id, 9, true) + ' ' + pad(sn.name, 16, true) + ' ' +
    pad(sizeToStr(sn.vmStateSize), 8, false) + pad(formatDate(sn.dateSec), 20, false) +
    pad(formatVmClock(sn.vmClockSec, sn.vmClockNsec), 13, false) +
    pad(sn.icount === undefined ? '' : String(sn.icount), 11, false)
}

/**
 * `Snapshot list:`, the column header and one row per snapshot, each line ending in `\n`, as
 * qemu-img prints for `snapshot -l` and inside `info`. An empty list gives '' (qemu-img prints
 * nothing then).
 */
export function formatSnapshotTable(snapshots: SnapshotInfo[]): string {
  if (snapshots.length === 0) return ''
  return `Snapshot list:\n${SNAPSHOT_HEADER}\n` + snapshots.map((sn) => snapshotRow(sn) + '\n').join('')
}

/** block/qapi.c dump_qobject: a QObject tree as indented `key: value` lines. */
function dumpQValue(indent: number, value: QValue): string {
  if (Array.isArray(value)) {
    return value.map((element, i) => dumpMember(indent, `[${i}]`, element)).join('')
  }
  if (value !== null && typeof value === 'object') {
    return qdictKeys(value).map((key) => dumpMember(indent, key.replaceAll('-', ' '), value[key] as QValue)).join('')
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  return value === null ? 'null' : String(value)
}

/** One `label:` line; composite values follow on their own lines, one level deeper. */
function dumpMember(indent: number, label: string, value: QValue): string {
  const prefix = ' '.repeat(indent * 4) + label + ':'
  if (value !== null && typeof value === 'object') return `${prefix}\n${dumpQValue(indent + 1, value)}`
  return `${prefix} ${dumpQValue(indent + 1, value)}\n`
}

/**
 * qemu-img 7.2 `info` human output for one image (bdrv_image_info_dump), every line ending in
 * `\n`. Chains are joined by the caller with a blank line between images.
 */
export function formatInfoHuman(info: ImageInfo): string {
  const lines = [
    `image: ${info.filename}`,
    `file format: ${info.format}`,
    `virtual size: ${sizeToStr(info.virtualSize)} (${info.virtualSize} bytes)`,
    `disk size: ${info.actualSize === undefined ? 'unavailable' : sizeToStr(info.actualSize)}`,
  ]
  if (info.encrypted === true) lines.push('encrypted: yes')
  if (info.clusterSize !== undefined) lines.push(`cluster_size: ${info.clusterSize}`)
  if (info.dirtyFlag === true) lines.push('cleanly shut down: no')
  if (info.backingFilename !== undefined) {
    let line = `backing file: ${info.backingFilename}`
    if (info.fullBackingFilename === undefined) line += ' (cannot determine actual path)'
    else if (info.fullBackingFilename !== info.backingFilename) line += ` (actual path: ${info.fullBackingFilename})`
    lines.push(line)
    if (info.backingFilenameFormat !== undefined) lines.push(`backing file format: ${info.backingFilenameFormat}`)
  }
  let text = lines.map((line) => line + '\n').join('')
  text += formatSnapshotTable(info.snapshots ?? [])
  return text + formatSpecificHuman(info)
}

/** The "Format specific information:" section (bdrv_image_info_specific_dump), or ''. */
export function formatSpecificHuman(info: ImageInfo): string {
  if (info.formatSpecific === undefined) return ''
  return 'Format specific information:\n' + dumpQValue(1, formatSpecificToQValue(info.formatSpecific))
}
