// The secret qcow2's encryption options name, and the LUKS header they add to a `measure`
// (qcow2_measure reads them its own way); the options themselves: qcow2/encrypt-options.ts.
import { ImageError } from '../errors.js'
import { CIPHER_ALGORITHMS, isOneOf } from '../crypto/provider.js'
import { luksPayloadLength, type LuksCreateOptions } from '../crypto/luks.js'
import { choice, luksChoices } from '../qcow2/encrypt-options.js'
import { lookupSecretUtf8, type SecretRegistry } from './secrets.js'

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

export { toEncryptOptions } from '../qcow2/encrypt-options.js'
