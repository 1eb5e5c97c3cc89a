// qcow2_amend_opts: the -o options qemu-img amend takes for qcow2, the creation options it
// refuses as creation-only, and what the amendable ones ask for.
import { ImageError } from '../errors.js'
import type { AmendOptionNames, AmendOptions } from '../format/amend-capability.js'
import { parseBool, parseOptionNumber, parseOptionSize } from '../format/option-values.js'

export const QCOW2_AMEND_OPTION_NAMES: AmendOptionNames = {
  amendable: ['compat', 'lazy_refcounts', 'refcount_bits', 'data_file', 'data_file_raw', 'size', 'backing_file', 'backing_fmt'],
  createOnly: ['cluster_size', 'preallocation', 'extended_l2', 'compression_type', 'encryption', 'encrypt.format'],
}

/** The amendable options' values, with qcow2_amend_options' messages. */
export function parseQcow2AmendOptions(opts: ReadonlyMap<string, string>): AmendOptions {
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
