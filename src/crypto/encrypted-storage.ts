// A view of a LUKS image's data storage in plaintext: writes are encrypted with the sector numbers
// of their host offsets (crypt_physical_offset), reads decrypted. Unaligned writes read, decrypt
// and rewrite the partial sectors at their ends (QEMU aligns encrypted requests to 512 bytes).
// The write engine writes guest data through it and never sees ciphertext. Writes touching the
// same sector are serialized (a range lock), since the write engine runs in-place writes in parallel.
import type { Storage } from '../io/storage.js'
import { SECTOR_SIZE, type SectorCipher } from './sector-cipher.js'

/** Plaintext `[offset, offset+length)` (sector aligned) of `inner`; bytes past its end read as zeros first. */
async function readSectors(inner: Storage, cipher: SectorCipher, offset: number, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length)
  const available = Math.max(0, Math.min(length, (await inner.size()) - offset))
  if (available > 0) bytes.set(await inner.read(offset, available), 0)
  return cipher.decrypt(bytes, offset / SECTOR_SIZE)
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

/** Wraps `inner` so that what is written through it lands encrypted by `cipher`. */
export function encryptedStorage(inner: Storage, cipher: SectorCipher): Storage {
  const lock = new RangeLock()
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
      const release = await lock.acquire(start, end)
      try {
        let plain = data
        if (start !== offset || end !== offset + data.length) {
          plain = new Uint8Array(end - start)
          if (start < offset) plain.set(await readSectors(inner, cipher, start, SECTOR_SIZE), 0)
          if (end > offset + data.length) plain.set(await readSectors(inner, cipher, end - SECTOR_SIZE, SECTOR_SIZE), end - start - SECTOR_SIZE)
          plain.set(data, offset - start)
        }
        await inner.write(start, await cipher.encrypt(plain, start / SECTOR_SIZE))
      } finally {
        release()
      }
    },
    flush: () => inner.flush(),
    truncate: (length) => inner.truncate(length),
    close: async () => undefined, // the image closes the real storage
  }
}
