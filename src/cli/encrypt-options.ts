// qemu-img's qcow2 encryption options (-o encryption=on | encrypt.format=aes|luks and the LUKS
// encrypt.* keys), checked with QEMU's QAPI messages, and the secret they name; and the LUKS
// header they add to a `measure` (qcow2_measure reads them its own way).
import { ImageError } from '../errors.js'
import type { Qcow2CreateOptions } from '../qcow2/create.js'
import { CIPHER_ALGORITHMS, CIPHER_MODES, HASH_ALGORITHMS, IVGEN_ALGORITHMS, isOneOf } from '../crypto/provider.js'
import { luksPayloadLength, type LuksCreateOptions } from '../crypto/luks.js'
import { parseBool } from './create-options.js'
import { lookupSecretUtf8, type SecretRegistry } from './secrets.js'

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
function choice<T extends string>(opts: ReadonlyMap<string, string>, key: (typeof LUKS_KEYS)[number], allowed: readonly T[]): T | undefined {
  const value = opts.get(`encrypt.${key}`)
  if (value !== undefined && !isOneOf(allowed, value)) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' does not accept value '${value}'`)
  return value as T | undefined
}

/** The LUKS choices after the cipher, in QAPI's member order. */
function luksChoices(opts: ReadonlyMap<string, string>): Omit<LuksCreateOptions, 'cipherAlg' | 'iterTime'> {
  return {
    cipherMode: choice(opts, 'cipher-mode', CIPHER_MODES),
    ivgenAlg: choice(opts, 'ivgen-alg', IVGEN_ALGORITHMS),
    ivgenHashAlg: choice(opts, 'ivgen-hash-alg', HASH_ALGORITHMS),
    hashAlg: choice(opts, 'hash-alg', HASH_ALGORITHMS),
  }
}

/** Ciphers QEMU 7.2's options accept but its LUKS code refuses once it has the secret. */
const REFUSED_CIPHERS = ['des', '3des'] as const

/**
 * Bytes of LUKS header a `measure -O qcow2` target needs (0 without LUKS), as qcow2_measure
 * finds them. Only `encrypt.format=luks` counts: `aes` (its key is not stored in the image),
 * `encryption=on`, other values and the other encrypt.* keys are ignored, not refused. For LUKS,
 * QEMU formats a header in memory, so the options are checked as create checks them: the QAPI
 * values, `encrypt.key-secret` and the secret it names (UTF-8), then the cipher. The size
 * depends only on the master key length (cipher and mode); hash and iter-time do not matter.
 */
export function measureLuksHeader(opts: ReadonlyMap<string, string>, secrets: SecretRegistry): number {
  if (opts.get('encrypt.format') !== 'luks') return 0
  const cipher = opts.get('encrypt.cipher-alg')
  const refused = cipher !== undefined && isOneOf(REFUSED_CIPHERS, cipher)
  const options: LuksCreateOptions = { cipherAlg: refused ? undefined : choice(opts, 'cipher-alg', CIPHER_ALGORITHMS), ...luksChoices(opts) }
  const secretId = opts.get('encrypt.key-secret')
  if (secretId === undefined) throw new ImageError('BAD_KEY', "Parameter 'encrypt.key-secret' is required for cipher")
  lookupSecretUtf8(secrets, secretId)
  if (refused) throw new ImageError('UNSUPPORTED', `Algorithm '${cipher}' not supported`)
  return luksPayloadLength(options)
}

/** The secret ID `-o encrypt.key-secret=ID` names, if any. */
export function encryptionSecretId(opts: ReadonlyMap<string, string>): string | undefined {
  return opts.get('encrypt.key-secret')
}
