// A view of an encrypted image's data storage in plaintext: writes are encrypted with the sector
// numbers of their host offsets (LUKS: crypt_physical_offset), or of offsets the caller gives
// (legacy AES qcow2 numbers sectors by guest offset: writeNumbered); reads are decrypted.
// Unaligned writes read, decrypt and rewrite the partial sectors at their ends (QEMU aligns
// encrypted requests to 512 bytes). The write engine writes guest data through it and never sees
// ciphertext. Writes touching the same sector are serialized (a range lock), since the write
// engine runs in-place writes in parallel.
import type { Storage } from '../io/storage.js'
import { SECTOR_SIZE, type SectorCipher } from './sector-cipher.js'

/**
 * Plaintext `[offset, offset+length)` (sector aligned) of `inner`, its first sector numbered
 * `sector`; bytes past its end read as zeros first.
 */
async function readSectors(inner: Storage, cipher: SectorCipher, offset: number, length: number, sector: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length)
  const available = Math.max(0, Math.min(length, (await inner.size()) - offset))
  if (available > 0) bytes.set(await inner.read(offset, available), 0)
  return cipher.decrypt(bytes, sector)
}

/** Sector ranges being written; a write waits for every one it overlaps. */
class RangeLock {
  readonly #held: { start: number; end: number; done: Promise<void> }[] = []

  async acquire(start: number, end: number): Promise<() => void> {
    for (;;) {
      const blocker = this.#held.find((r) => r.start < end && start < r.end)
      if (!blocker) break
      await blocker.done
    }
    let release!: () => void
    const entry = { start, end, done: new Promise<void>((resolve) => { release = resolve }) }
    this.#held.push(entry)
    return () => {
      this.#held.splice(this.#held.indexOf(entry), 1)
      release()
    }
  }
}

/** An encrypting view; `write` numbers sectors by the offsets written to. */
export interface EncryptedStorage extends Storage {
  /**
   * Writes `data` at `offset` with its sectors numbered as if it lay at `numberedAt` (which
   * must be congruent to `offset` modulo 512): legacy AES numbers by guest offset.
   */
  writeNumbered(offset: number, data: Uint8Array, numberedAt: number): Promise<void>
}

/** Wraps `inner` so that what is written through it lands encrypted by `cipher`. */
export function encryptedStorage(inner: Storage, cipher: SectorCipher): EncryptedStorage {
  const lock = new RangeLock()
  const writeNumbered = async (offset: number, data: Uint8Array, numberedAt: number): Promise<void> => {
    const shift = numberedAt - offset
    if (shift % SECTOR_SIZE !== 0) throw new RangeError(`encrypted write at ${offset} numbered from ${numberedAt}: not sector congruent`)
    const start = Math.floor(offset / SECTOR_SIZE) * SECTOR_SIZE
    const end = Math.ceil((offset + data.length) / SECTOR_SIZE) * SECTOR_SIZE
    const sector = (start + shift) / SECTOR_SIZE
    const release = await lock.acquire(start, end)
    try {
      let plain = data
      if (start !== offset || end !== offset + data.length) {
        plain = new Uint8Array(end - start)
        if (start < offset) plain.set(await readSectors(inner, cipher, start, SECTOR_SIZE, sector), 0)
        if (end > offset + data.length) {
          const last = end - SECTOR_SIZE
          plain.set(await readSectors(inner, cipher, last, SECTOR_SIZE, (last + shift) / SECTOR_SIZE), end - start - SECTOR_SIZE)
        }
        plain.set(data, offset - start)
      }
      await inner.write(start, await cipher.encrypt(plain, sector))
    } finally {
      release()
    }
  }
  return {
    name: inner.name,
    size: () => inner.size(),
    async read(offset, length) {
      const start = Math.floor(offset / SECTOR_SIZE) * SECTOR_SIZE
      const end = Math.ceil((offset + length) / SECTOR_SIZE) * SECTOR_SIZE
      const plain = await readSectors(inner, cipher, start, end - start, start / SECTOR_SIZE)
      return plain.subarray(offset - start, offset - start + length)
    },
    write: (offset, data) => writeNumbered(offset, data, offset),
    writeNumbered,
    flush: () => inner.flush(),
    truncate: (length) => inner.truncate(length),
    close: async () => undefined, // the image closes the real storage
  }
}
