// qemu-img's -o option lists for qcow2 and raw: parsing, validation, `-o help`, and the
// "Formatting '…', fmt=… k=v …" line create prints.
import { ImageError } from '../errors.js'
import type { Qcow2CreateOptions, Preallocation } from '../qcow2/create.js'
import { parseOptionString } from './image-opts.js'
import { parseSize } from './size.js'

/** Text of `-o help` per format (as qemu-img 7.2 prints it). */
export const OPTION_HELP: Record<string, string> = {
  qcow2: `Supported qcow2 options:
  backing_file=<str>     - File name of a base image
  backing_fmt=<str>      - Image format of the base image
  cluster_size=<size>    - qcow2 cluster size
  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])
  compression_type=<str> - Compression method used for image cluster compression
  data_file=<str>        - File name of an external data file
  data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image
  extended_l2=<bool (on/off)> - Extended L2 tables
  lazy_refcounts=<bool (on/off)> - Postpone refcount updates
  preallocation=<str>    - Preallocation mode (allowed values: off, metadata, falloc, full)
  refcount_bits=<num>    - Width of a reference count entry in bits
  size=<size>            - Virtual disk size
`,
  raw: `Supported raw options:
  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)
  size=<size>            - Virtual disk size
`,
}

const QCOW2_KEYS = new Set(['size', 'compat', 'backing_file', 'backing_fmt', 'data_file', 'data_file_raw', 'cluster_size', 'preallocation', 'lazy_refcounts', 'refcount_bits', 'compression_type', 'extended_l2', 'encryption', 'encrypt.format'])
const RAW_KEYS = new Set(['size', 'preallocation'])

/** Parses an on/off value as QEMU's qapi bool parser does. */
export function parseBool(key: string, value: string): boolean {
  if (['on', 'yes', 'true', 'y'].includes(value)) return true
  if (['off', 'no', 'false', 'n'].includes(value)) return false
  throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects 'on' or 'off'`)
}

/** Merges several -o strings (later ones win) into one key/value map, checking names. */
export function parseCreateOptions(format: string, texts: readonly string[]): Map<string, string> {
  const keys = format === 'qcow2' ? QCOW2_KEYS : format === 'raw' ? RAW_KEYS : undefined
  if (!keys) throw new ImageError('INVALID_ARGUMENT', `Unknown file format '${format}'`)
  const merged = new Map<string, string>()
  for (const text of texts) {
    for (const [key, value] of parseOptionString(text)) {
      if (!keys.has(key)) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${key}'`)
      merged.set(key, value)
    }
  }
  if (merged.has('encryption') || merged.has('encrypt.format')) {
    throw new ImageError('UNSUPPORTED', 'Encrypted images are not supported yet')
  }
  return merged
}

/** Turns a qcow2 option map into create options (size comes separately). */
export function toQcow2Options(opts: Map<string, string>, size: number): Qcow2CreateOptions {
  const compat = opts.get('compat')
  const normalizedCompat = compat === undefined ? undefined : compat === 'v2' || compat === '0.10' ? '0.10' : compat === 'v3' || compat === '1.1' ? '1.1' : undefined
  if (compat !== undefined && normalizedCompat === undefined) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${compat}'`)
  const prealloc = opts.get('preallocation')
  if (prealloc !== undefined && !['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${prealloc}'`)
  const compression = opts.get('compression_type')
  if (compression !== undefined && compression !== 'zlib' && compression !== 'zstd') throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${compression}'`)
  const bool = (key: string) => (opts.has(key) ? parseBool(key, opts.get(key)!) : undefined)
  const refcountBits = opts.get('refcount_bits')
  return {
    size,
    compat: normalizedCompat as '0.10' | '1.1' | undefined,
    clusterSize: opts.has('cluster_size') ? parseSize(opts.get('cluster_size')!) : undefined,
    refcountBits: refcountBits === undefined ? undefined : Number(refcountBits),
    lazyRefcounts: bool('lazy_refcounts'),
    extendedL2: bool('extended_l2'),
    preallocation: prealloc as Preallocation | undefined,
    backingFile: opts.get('backing_file'),
    backingFormat: opts.get('backing_fmt'),
    compressionType: compression as 'zlib' | 'zstd' | undefined,
    dataFile: opts.get('data_file'),
    dataFileRaw: bool('data_file_raw'),
  }
}

/** QEMU doubles commas inside option values when printing them. */
function value(text: string): string {
  return text.replaceAll(',', ',,')
}

/** The line `qemu-img create` prints (without the trailing newline). */
export function formattingLine(filename: string, format: string, opts: Map<string, string>, size: number): string {
  const parts: string[] = []
  const add = (key: string, v: string | undefined) => {
    if (v !== undefined) parts.push(`${key}=${value(v)}`)
  }
  if (format === 'raw') {
    add('size', String(size))
    add('preallocation', opts.get('preallocation'))
  } else {
    add('cluster_size', String(opts.has('cluster_size') ? parseSize(opts.get('cluster_size')!) : 65536))
    add('extended_l2', opts.has('extended_l2') ? (parseBool('extended_l2', opts.get('extended_l2')!) ? 'on' : 'off') : 'off')
    add('preallocation', opts.get('preallocation'))
    add('compression_type', opts.get('compression_type') ?? 'zlib')
    add('size', String(size))
    add('compat', opts.get('compat'))
    add('backing_file', opts.get('backing_file'))
    add('backing_fmt', opts.get('backing_fmt'))
    add('data_file', opts.get('data_file'))
    add('data_file_raw', opts.has('data_file_raw') ? (parseBool('data_file_raw', opts.get('data_file_raw')!) ? 'on' : 'off') : undefined)
    add('lazy_refcounts', opts.has('lazy_refcounts') ? (parseBool('lazy_refcounts', opts.get('lazy_refcounts')!) ? 'on' : 'off') : 'off')
    add('refcount_bits', opts.get('refcount_bits') ?? '16')
  }
  return `Formatting '${filename}', fmt=${format} ${parts.join(' ')}`
}
