// A view of a LUKS image's data storage in plaintext: writes are encrypted with the sector numbers
// of their host offsets (crypt_physical_offset), reads decrypted. Unaligned writes read, decrypt
// and rewrite the partial sectors at their ends (QEMU aligns encrypted requests to 512 bytes).
// The write engine writes guest data through it and never sees ciphertext.
import type { Storage } from '../../io/storage.js'
import { SECTOR_SIZE, type SectorCipher } from './sector-cipher.js'

/** Plaintext `[offset, offset+length)` (sector aligned) of `inner`; bytes past its end read as zeros first. */
async function readSectors(inner: Storage, cipher: SectorCipher, offset: number, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length)
  const available = Math.max(0, Math.min(length, (await inner.size()) - offset))
  if (available > 0) bytes.set(await inner.read(offset, available), 0)
  return cipher.decrypt(bytes, offset / SECTOR_SIZE)
}

/** Wraps `inner` so that what is written through it lands encrypted by `cipher`. */
export function encryptedStorage(inner: Storage, cipher: SectorCipher): Storage {
  return {
    name: inner.name,
    size: () => inner.size(),
    async read(offset, length) {
      const start = Math.floor(offset / SECTOR_SIZE) * SECTOR_SIZE
      const end = Math.ceil((offset + length) / SECTOR_SIZE) * SECTOR_SIZE
      const plain = await readSectors(inner, cipher, start, end - start)
      return plain.subarray(offset - start, offset - start + length)
    },
    async write(offset, data) {
      const start = Math.floor(offset / SECTOR_SIZE) * SECTOR_SIZE
      const end = Math.ceil((offset + data.length) / SECTOR_SIZE) * SECTOR_SIZE
      let plain = data
      if (start !== offset || end !== offset + data.length) {
        plain = new Uint8Array(end - start)
        if (start < offset) plain.set(await readSectors(inner, cipher, start, SECTOR_SIZE), 0)
        if (end > offset + data.length) plain.set(await readSectors(inner, cipher, end - SECTOR_SIZE, SECTOR_SIZE), end - start - SECTOR_SIZE)
        plain.set(data, offset - start)
      }
      await inner.write(start, await cipher.encrypt(plain, start / SECTOR_SIZE))
    },
    flush: () => inner.flush(),
    truncate: (length) => inner.truncate(length),
    close: async () => undefined, // the image closes the real storage
  }
}
