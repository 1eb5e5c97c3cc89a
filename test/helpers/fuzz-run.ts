// What the per-format metadata fuzz tests share: a memory storage that refuses to grow past a
// limit (a full disk, not an attacker-sized allocation), the verdict on an error (an ImageError
// naming the file is the right answer, anything else a bug), and the walk every mutated image
// gets: block status to the end, a read, writes and a zero write.
import assert from 'node:assert/strict'
import { ImageError, isImageError } from '../../src/errors.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'

/** A memory storage named `name` whose writes past `limit` bytes fail as a full disk. */
export function boundedStorage(bytes: Uint8Array, name: string, limit: number): MemoryStorage {
  const storage = new MemoryStorage(bytes, name)
  const write = storage.write.bind(storage)
  storage.write = async (offset: number, data: Uint8Array): Promise<void> => {
    if (offset + data.length > limit) throw new ImageError('IO', `${name}: write at ${offset} beyond the fuzz limit (No space left on device)`, { file: name })
    return write(offset, data)
  }
  return storage
}

/** Undefined when `e` is an ImageError naming `name`; otherwise the bug to report. */
export function judge(e: unknown, name: string): unknown {
  if (!isImageError(e)) return e
  if (!e.message.includes(name)) return new Error(`${e.code} message names no file: ${e.message}`)
  return undefined
}

/**
 * Block status across the image (at most 64 steps), a read of its first 2 MiB, then two writes
 * and a zero write at offsets below 8 MiB (aligned down to `align`, at most 2 MiB long).
 */
export async function walkDevice(device: BlockDevice, rand: () => number, align = 1): Promise<void> {
  let steps = 0
  for (let offset = 0; offset < device.size && steps < 64; steps++) {
    const st = await device.blockStatus(offset, device.size - offset)
    assert.ok(st.length > 0)
    offset += st.length
  }
  await device.read(0, Math.min(device.size, 2 * 1024 * 1024))
  for (let op = 0; op < 3 && device.size > 0; op++) {
    const offset = Math.floor((rand() % Math.min(device.size, 8 * 1024 * 1024)) / align) * align
    const length = Math.min(align > 1 ? align * (1 + (rand() % 3)) : 1 + (rand() % (2 * 1024 * 1024)), device.size - offset)
    if (op === 1) await device.writeZeroes(offset, length)
    else await device.write(offset, new Uint8Array(length).fill(0x5a))
  }
}
