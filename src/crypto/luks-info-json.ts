// A LUKS header's facts as qemu-img's JSON shows them (QCryptoBlockInfoLUKS), shared by the
// luks format and qcow2's LUKS encryption.
import type { InfoMembers, LuksInfo } from '../format/info.js'

/**
 * A LUKS header's QAPI members (QCryptoBlockInfoLUKS, QEMU 7.2: no detached-header): luks'
 * `format-specific` data, and the members of qcow2's `encrypt` after its format.
 */
export function luksToJson(luks: LuksInfo): InfoMembers {
  return {
    'cipher-alg': luks.cipherAlg,
    'cipher-mode': luks.cipherMode,
    'ivgen-alg': luks.ivgenAlg,
    'ivgen-hash-alg': luks.ivgenHashAlg,
    'hash-alg': luks.hashAlg,
    'payload-offset': luks.payloadOffset,
    'master-key-iters': luks.masterKeyIters,
    uuid: luks.uuid,
    slots: luks.slots.map((slot) => ({
      active: slot.active,
      iters: slot.iters,
      stripes: slot.stripes,
      'key-offset': slot.keyOffset,
    })),
  }
}
