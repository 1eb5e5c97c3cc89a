// qcow2's encryption options (-o encryption=on | encrypt.format=aes|luks and the LUKS encrypt.*
// keys), checked with QEMU's QAPI messages (qcow2_co_create_opts + QAPI visiting).
import { ImageError } from '../errors.js'
import type { Qcow2CreateOptions } from './create.js'
import { CIPHER_ALGORITHMS, CIPHER_MODES, HASH_ALGORITHMS, IVGEN_ALGORITHMS, isOneOf } from '../crypto/provider.js'
import type { LuksCreateOptions } from '../crypto/luks.js'
import { parseBool } from '../format/option-values.js'

/** The LUKS-only keys (QCryptoBlockCreateOptionsLUKS members). */
const LUKS_KEYS = ['cipher-alg', 'cipher-mode', 'ivgen-alg', 'ivgen-hash-alg', 'hash-alg', 'iter-time'] as const

/** QEMU's parse_option_number for the iteration time. */
function iterTime(value: string): number {
  const match = /^\s*(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(value)
  if (!match) throw new ImageError('INVALID_ARGUMENT', "Parameter 'encrypt.iter-time' expects a number")
  if (match[1] !== undefined) return Number.parseInt(match[1], 16)
  return match[2] !== undefined ? Number.parseInt(match[2], 8) : Number(match[3])
}

/**
 * The encryption a qcow2 option map asks for (qcow2_co_create_opts + QAPI visiting), undefined
 * when none. The secret itself is looked up by the command ({@link encryptionSecretId}).
 */
export function toEncryptOptions(opts: ReadonlyMap<string, string>): Qcow2CreateOptions['encrypt'] {
  const alias = opts.get('encryption')
  let format = opts.get('encrypt.format')
  if (alias !== undefined) {
    if (format !== undefined) throw new ImageError('INVALID_ARGUMENT', "'encrypt.format' and its alias 'encryption' can't be used at the same time")
    if (parseBool('encryption', alias)) format = 'aes'
  }
  const given = [...opts.keys()].filter((key) => key.startsWith('encrypt.') && key !== 'encrypt.format')
  if (format === undefined) {
    if (given.length > 0) throw new ImageError('INVALID_ARGUMENT', "Parameter 'encrypt.format' is missing")
    return undefined
  }
  if (format !== 'aes' && format !== 'luks') throw new ImageError('INVALID_ARGUMENT', `Parameter 'format' does not accept value '${format}'`)
  if (format === 'aes') {
    const unexpected = given.find((key) => key !== 'encrypt.key-secret')
    if (unexpected !== undefined) throw new ImageError('INVALID_ARGUMENT', `Parameter '${unexpected}' is unexpected`)
  }
  if (!opts.has('encrypt.key-secret')) throw new ImageError('BAD_KEY', "Parameter 'encrypt.key-secret' is required for cipher")
  const time = opts.get('encrypt.iter-time')
  return {
    format,
    cipherAlg: choice(opts, 'cipher-alg', CIPHER_ALGORITHMS),
    ...luksChoices(opts),
    iterTime: time === undefined ? undefined : iterTime(time),
  }
}

/** An encrypt.* value that must be one of `allowed`, checked with QEMU's QAPI message. */
export function choice<T extends string>(opts: ReadonlyMap<string, string>, key: (typeof LUKS_KEYS)[number], allowed: readonly T[]): T | undefined {
  const value = opts.get(`encrypt.${key}`)
  if (value !== undefined && !isOneOf(allowed, value)) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' does not accept value '${value}'`)
  return value as T | undefined
}

/** The LUKS choices after the cipher, in QAPI's member order. */
export function luksChoices(opts: ReadonlyMap<string, string>): Omit<LuksCreateOptions, 'cipherAlg' | 'iterTime'> {
  return {
    cipherMode: choice(opts, 'cipher-mode', CIPHER_MODES),
    ivgenAlg: choice(opts, 'ivgen-alg', IVGEN_ALGORITHMS),
    ivgenHashAlg: choice(opts, 'ivgen-hash-alg', HASH_ALGORITHMS),
    hashAlg: choice(opts, 'hash-alg', HASH_ALGORITHMS),
  }
}
