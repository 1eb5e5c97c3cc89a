// qcow2_create_opts: the -o options qemu-img create takes for qcow2, in the order qemu-img 7.2
// prints them in "Formatting …", and what they ask for.
import { BACKING_FILE_OPTION, LEGACY_ENCRYPTION_OPTION, SIZE_OPTION, luksCipherOptions } from '../format/create-options.js'
import type { CreateOptionDesc } from '../format/module.js'
import { ImageError } from '../errors.js'
import { parseBool, parseOptionNumber, parseOptionSize } from '../format/option-values.js'
import type { Preallocation, Qcow2CreateOptions } from './create.js'

export const QCOW2_CREATE_OPTIONS: readonly CreateOptionDesc[] = [
  LEGACY_ENCRYPTION_OPTION,
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'aes', 'luks'" },
  { name: 'encrypt.key-secret', type: 'string', help: 'ID of secret providing qcow AES key or LUKS passphrase' },
  ...luksCipherOptions('encrypt.'),
  { name: 'cluster_size', type: 'size', help: 'qcow2 cluster size', default: '65536' },
  { name: 'extended_l2', type: 'bool', help: 'Extended L2 tables', default: 'off' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, metadata, falloc, full)' },
  { name: 'compression_type', type: 'string', help: 'Compression method used for image cluster compression', default: 'zlib' },
  SIZE_OPTION,
  { name: 'compat', type: 'string', help: 'Compatibility level (v2 [0.10] or v3 [1.1])' },
  BACKING_FILE_OPTION,
  { name: 'backing_fmt', type: 'string', help: 'Image format of the base image' },
  { name: 'data_file', type: 'string', help: 'File name of an external data file' },
  { name: 'data_file_raw', type: 'bool', help: 'The external data file must stay valid as a raw image' },
  { name: 'lazy_refcounts', type: 'bool', help: 'Postpone refcount updates', default: 'off' },
  { name: 'refcount_bits', type: 'number', help: 'Width of a reference count entry in bits', default: '16' },
]

/** Turns a qcow2 option map into create options (size comes separately), as qcow2_co_create_opts does. */
export function toQcow2Options(opts: ReadonlyMap<string, string>, size: number): Qcow2CreateOptions {
  // QEMU hands the options to its QAPI creation code, whose names and messages these are.
  const choice = <T extends string>(key: string, qapiName: string, allowed: readonly T[]): T | undefined => {
    const v = opts.get(key)
    if (v !== undefined && !(allowed as readonly string[]).includes(v)) throw new ImageError('INVALID_ARGUMENT', `Parameter '${qapiName}' does not accept value '${v}'`)
    return v as T | undefined
  }
  const compat = choice('compat', 'version', ['0.10', 'v2', '1.1', 'v3'])
  const bool = (key: string) => (opts.has(key) ? parseBool(key, opts.get(key)!) : undefined)
  const refcountBits = opts.get('refcount_bits')
  return {
    size,
    compat: compat === undefined ? undefined : compat === 'v2' || compat === '0.10' ? '0.10' : '1.1',
    clusterSize: opts.has('cluster_size') ? parseOptionSize('cluster_size', opts.get('cluster_size')!) : undefined,
    refcountBits: refcountBits === undefined ? undefined : parseOptionNumber('refcount_bits', refcountBits),
    lazyRefcounts: bool('lazy_refcounts'),
    extendedL2: bool('extended_l2'),
    preallocation: choice<Preallocation>('preallocation', 'preallocation', ['off', 'metadata', 'falloc', 'full']),
    backingFile: opts.get('backing_file'),
    backingFormat: opts.get('backing_fmt'),
    compressionType: choice('compression_type', 'compression-type', ['zlib', 'zstd']),
    dataFile: opts.get('data_file'),
    dataFileRaw: bool('data_file_raw'),
  }
}
