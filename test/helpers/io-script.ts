// A seeded script of qemu-io commands (write -P, write -z, discard) over an image, in whole
// sectors: oracle tests run it through qimg io and qemu-io and compare the images.
import { prng } from './prng.js'

/** `count` commands over `size` bytes; one in three runs up to `longSectors` sectors long. */
export function ioScript(seed: number, size: number, count: number, longSectors = 4096): string[] {
  const rand = prng(seed)
  const sectors = size / 512
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const start = Math.floor(rand() * sectors)
    const length = 1 + Math.floor(rand() * Math.min(sectors - start, rand() < 0.3 ? longSectors : 64))
    const kind = rand()
    const range = `${start * 512} ${length * 512}`
    if (kind < 0.6) out.push(`write -P 0x${(1 + Math.floor(rand() * 254)).toString(16)} ${range}`)
    else if (kind < 0.8) out.push(`write -z ${range}`)
    else out.push(`discard ${range}`)
  }
  return out
}
