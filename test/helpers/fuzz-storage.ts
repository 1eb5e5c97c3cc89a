// Memory storage for fuzz tests: it must not grow without bound, so a write past `limit` bytes is
// refused as a full disk would be (an ImageError naming the file).
import assert from 'node:assert/strict'
import { ImageError } from '../../src/errors.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'

export class BoundedStorage extends MemoryStorage {
  readonly #limit: number
  constructor(bytes: Uint8Array, name: string, limit: number) {
    super(bytes, name)
    this.#limit = limit
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset + data.length > this.#limit) throw new ImageError('IO', `${this.name}: write at ${offset} beyond the fuzz limit (No space left on device)`, { file: this.name })
    return super.write(offset, data)
  }
}

/**
 * What every fuzz case does with an image that opened: block status over it (64 runs at most),
 * a read of its first 2 MiB, three writes at random places (the second a write-zeroes), close.
 */
export async function exerciseDevice(device: BlockDevice, rand: () => number): Promise<void> {
  const MiB = 1024 * 1024
  let steps = 0
  for (let offset = 0; offset < device.size && steps < 64; steps++) {
    const st = await device.blockStatus(offset, device.size - offset)
    assert.ok(st.length > 0)
    offset += st.length
  }
  await device.read(0, Math.min(device.size, 2 * MiB))
  for (let op = 0; op < 3 && device.size > 0; op++) {
    const offset = rand() % Math.min(device.size, 8 * MiB)
    const length = Math.min(1 + (rand() % (2 * MiB)), device.size - offset)
    if (op === 1) await device.writeZeroes(offset, length)
    else await device.write(offset, new Uint8Array(length).fill(0x5a))
  }
  await device.close()
}
