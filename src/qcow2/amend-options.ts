// qcow2_amend_opts: the -o options qemu-img amend takes for qcow2, the creation options it
// refuses as creation-only, and what the amendable ones ask for.
import { ImageError } from '../errors.js'
import type { AmendOptionNames } from '../format/amend-capability.js'
import type { BackingReference } from '../format/driver.js'
import { parseBool, parseOptionNumber, parseOptionSize } from '../format/option-values.js'

export const QCOW2_AMEND_OPTION_NAMES: AmendOptionNames = {
  amendable: ['compat', 'lazy_refcounts', 'refcount_bits', 'data_file', 'data_file_raw', 'size', 'backing_file', 'backing_fmt'],
  createOnly: ['cluster_size', 'preallocation', 'extended_l2', 'compression_type', 'encryption', 'encrypt.format'],
}

/** qemu-img amend's -o values for qcow2, parsed (QEMU's names in camelCase). */
export interface Qcow2AmendOptions {
  compat?: '0.10' | '1.1' | undefined
  lazyRefcounts?: boolean | undefined
  refcountBits?: number | undefined
  dataFile?: string | undefined
  dataFileRaw?: boolean | undefined
  size?: number | undefined
}

/**
 * The amendable options' values, with qcow2_amend_options' messages: backing_file and
 * backing_fmt only as they already are (`backing`, the image's), compat a known level.
 */
export function parseQcow2AmendOptions(opts: ReadonlyMap<string, string>, backing: BackingReference | undefined): Qcow2AmendOptions {
  if ((opts.has('backing_file') && opts.get('backing_file') !== backing?.name) || (opts.has('backing_fmt') && opts.get('backing_fmt') !== backing?.format)) {
    throw new ImageError('INVALID_ARGUMENT', "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.")
  }
  const compat = opts.get('compat')
  if (compat !== undefined && !['0.10', 'v2', '1.1', 'v3'].includes(compat)) throw new ImageError('INVALID_ARGUMENT', `Unknown compatibility level ${compat}`)
  const bool = (key: string) => (opts.has(key) ? parseBool(key, opts.get(key)!) : undefined)
  return {
    compat: compat === undefined ? undefined : compat === '0.10' || compat === 'v2' ? '0.10' : '1.1',
    lazyRefcounts: bool('lazy_refcounts'),
    refcountBits: opts.has('refcount_bits') ? parseOptionNumber('refcount_bits', opts.get('refcount_bits')!) : undefined,
    dataFile: opts.get('data_file'),
    dataFileRaw: bool('data_file_raw'),
    size: opts.has('size') ? parseOptionSize('size', opts.get('size')!) : undefined,
  }
}
