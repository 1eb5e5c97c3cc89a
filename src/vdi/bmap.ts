// The VDI block map: one little-endian 32-bit entry per guest block, the index of its host
// block (data at offset_data + index × block_size), or 0xffffffff / 0xfffffffe for none.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { SECTOR_SIZE, VDI_DISCARDED, type VdiHeader } from './header.js'

/** True when `entry` names a host block (QEMU's VDI_IS_ALLOCATED). */
export function isAllocated(entry: number): boolean {
  return entry < VDI_DISCARDED
}

/** Bytes the block map takes on disk: whole sectors, as QEMU reads and writes it. */
export function bmapBytes(blocksInImage: number): number {
  return Math.ceil((blocksInImage * 4) / SECTOR_SIZE) * SECTOR_SIZE
}

/** Reads the block map (the sectors QEMU reads: a short file is an error). */
export async function readBmap(storage: ReadableStorage, header: VdiHeader): Promise<Uint32Array> {
  const bytes = await storage.read(header.offsetBmap, bmapBytes(header.blocksInImage))
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const map = new Uint32Array(header.blocksInImage)
  for (let i = 0; i < map.length; i++) map[i] = view.getUint32(i * 4, true)
  return map
}

/**
 * The rules qimg adds to QEMU's open (whose check reports them, but whose reads follow them):
 * every allocated entry names a host block below blocks_in_image, and no two share one.
 */
export function validateBmap(map: Uint32Array, header: VdiHeader, file: string): void {
  const owner = new Map<number, number>()
  for (let block = 0; block < map.length; block++) {
    const entry = map[block]!
    if (!isAllocated(entry)) continue
    const offset = header.offsetBmap + block * 4
    if (entry >= header.blocksInImage) {
      throw new ImageError('CORRUPT', `${file}: VDI block map at ${hex(header.offsetBmap)}: entry ${block} (at ${hex(offset)}) is ${entry}, not below blocks_in_image ${header.blocksInImage}`, { file, offset })
    }
    const first = owner.get(entry)
    if (first !== undefined) {
      throw new ImageError('CORRUPT', `${file}: VDI block map at ${hex(header.offsetBmap)}: entry ${block} (at ${hex(offset)}) names host block ${entry}, which entry ${first} uses too`, { file, offset })
    }
    owner.set(entry, block)
  }
}

/** Encodes one entry as stored. */
export function encodeEntry(entry: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, entry, true)
  return bytes
}
