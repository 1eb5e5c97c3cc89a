// Gives a new qcow2 image its encryption (qcow2_set_up_encryption): LUKS or legacy AES. Apart from
// crypto/encryption.ts so that encryption.ts (which image.ts imports) does not import image.ts.
import type { Storage } from '../../io/storage.js'
import type { Qcow2Image } from '../image.js'
import * as spec from '../spec.js'
import { formatLuks, type LuksCreateOptions } from '../../crypto/luks.js'
import type { CryptoProvider } from '../../crypto/provider.js'

/**
 * Gives a freshly created, still unencrypted image a LUKS header (qcow2_set_up_encryption):
 * the header area is allocated (cluster aligned, zero filled) and written, then crypt_method
 * and the FDE header extension are set in the header.
 */
export async function setUpLuksEncryption(image: Qcow2Image, provider: CryptoProvider, options: LuksCreateOptions, secret: Uint8Array): Promise<void> {
  const { area } = await formatLuks(provider, options, secret)
  const cs = image.layout.geometry.clusterSize
  const clusters = Math.ceil(area.length / cs)
  const offset = await image.writer.withTables(async (tables) => {
    const at = await tables.refcounts.allocate(clusters)
    const padded = new Uint8Array(clusters * cs)
    padded.set(area)
    await (tables.storage as Storage).write(at, padded)
    return at
  })
  const header = image.layout.header
  header.cryptMethod = spec.CRYPT_LUKS
  header.cryptoHeader = { offset, length: area.length }
  await image.rewriteHeader()
}

/**
 * Gives a freshly created image legacy AES encryption (qcow2_set_up_encryption with the qcow
 * format): only crypt_method changes, to 1. The key (the secret cut or zero-padded to 16 bytes)
 * is not stored in the image, and nothing is written under it.
 */
export async function setUpAesEncryption(image: Qcow2Image): Promise<void> {
  image.layout.header.cryptMethod = spec.CRYPT_AES
  await image.rewriteHeader()
}
