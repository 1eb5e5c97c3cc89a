// The LUKS header a measured target starts with (qcrypto_block_calculate_payload_offset, for
// qcow2_measure and block_crypto_measure): QEMU formats a header in memory, so the options are
// checked as create checks them, in its order: the QAPI values, the key secret and the secret
// it names, then the cipher. The length depends only on the master key length.
import { ImageError } from '../errors.js'
import { luksPayloadLength } from './luks.js'
import { CIPHER_ALGORITHMS, CIPHER_MODES, HASH_ALGORITHMS, IVGEN_ALGORITHMS, isOneOf } from './provider.js'

/** Ciphers QEMU 7.2's options accept but its LUKS code refuses once it has the secret. */
const REFUSED_CIPHERS = ['des', '3des'] as const

/**
 * Bytes of LUKS header for the LUKS options in `opts`, each named `prefix` + its QAPI name
 * ('encrypt.' in qcow2, none in luks); `lookupSecret` gives the secret as UTF-8 or throws
 * QEMU's message. Hash and iter-time do not matter.
 */
export function measureLuksHeader(opts: ReadonlyMap<string, string>, prefix: string, lookupSecret: (id: string) => Uint8Array): number {
  const choice = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const value = opts.get(prefix + key)
    // QAPI names the member without the prefix.
    if (value !== undefined && !isOneOf(allowed, value)) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' does not accept value '${value}'`)
    return value as T | undefined
  }
  const cipher = opts.get(`${prefix}cipher-alg`)
  const refused = cipher !== undefined && isOneOf(REFUSED_CIPHERS, cipher)
  const options = {
    cipherAlg: refused ? undefined : choice('cipher-alg', CIPHER_ALGORITHMS),
    cipherMode: choice('cipher-mode', CIPHER_MODES),
    ivgenAlg: choice('ivgen-alg', IVGEN_ALGORITHMS),
    ivgenHashAlg: choice('ivgen-hash-alg', HASH_ALGORITHMS),
    hashAlg: choice('hash-alg', HASH_ALGORITHMS),
  }
  const secretId = opts.get(`${prefix}key-secret`)
  if (secretId === undefined) throw new ImageError('BAD_KEY', `Parameter '${prefix}key-secret' is required for cipher`)
  lookupSecret(secretId)
  if (refused) throw new ImageError('UNSUPPORTED', `Algorithm '${cipher}' not supported`)
  return luksPayloadLength(options)
}
