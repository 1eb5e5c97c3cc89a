// QCOW's legacy AES encryption (crypto/block-qcow.c): AES-128-CBC per 512-byte sector, the IV
// the little-endian guest sector number (plain64), the key the secret cut or zero-padded to 16 bytes.
import { ImageError } from '../errors.js'
import type { CryptoProvider } from '../crypto/provider.js'
import { createSectorCipher, type SectorCipher } from '../crypto/sector-cipher.js'

export function qcowAesCipher(provider: CryptoProvider, secret: Uint8Array): SectorCipher {
  const key = new Uint8Array(16)
  key.set(secret.subarray(0, 16))
  return createSectorCipher(provider, { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'plain64', ivgenHashAlg: undefined }, key)
}

/** QEMU's message for an encrypted image opened without its key. */
export function missingKeyError(file: string): ImageError {
  return new ImageError('BAD_KEY', `${file}: Parameter 'encrypt.key-secret' is required for cipher`, { file, qemuText: "Parameter 'encrypt.key-secret' is required for cipher" })
}
