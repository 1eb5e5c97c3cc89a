// Helpers for VHDX tests: masking what both tools write at random, and building images from the
// specification (differencing disks, dirty logs) that qemu-img cannot make.
const MiB = 1024 * 1024

const u64 = (b: Uint8Array, at: number) => Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true))

/** Header GUIDs, sequence numbers and checksums and the page 83 GUID blanked. */
export function maskedVhdx(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice()
  for (const at of [64 * 1024, 128 * 1024]) copy.fill(0, at + 4, at + 64)
  // The metadata region: the second region table entry (its offset at 0x30000 + 16 + 32 + 16).
  const metadata = u64(copy, 0x30000 + 16 + 32 + 16)
  if (metadata + 64 * 1024 + 32 <= copy.length) copy.fill(0, metadata + 64 * 1024 + 16, metadata + 64 * 1024 + 32)
  return copy
}

export { MiB }

import { MemoryStorage } from '../../src/io/memory.js'
import { openChain } from '../../src/format/chain.js'
import { createVhdx } from '../../src/vhdx/create.js'
import { PARENT_LOCATOR_GUID, PARENT_VHDX_GUID, storeChecksum } from '../../src/vhdx/spec.js'
import { encodeParentLocator } from '../../src/vhdx/structures.js'

/** Recomputes the checksums of both headers and both region tables. */
export function resumVhdx(bytes: Uint8Array): void {
  for (const at of [64 * 1024, 128 * 1024]) storeChecksum(bytes.subarray(at, at + 4096), 4)
  for (const at of [192 * 1024, 256 * 1024]) storeChecksum(bytes.subarray(at, at + 64 * 1024), 4)
}

/** A new VHDX qimg made in memory, with `writes` (offset, length, pattern) done through the library. */
export async function newVhdx(size: number, options: Record<string, string>, name: string, writes: [number, number, number][] = []): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), name)
  await createVhdx({ storage, size, options: new Map(Object.entries(options)), secret: undefined, crypto: undefined, compressors: undefined })
  if (writes.length > 0) {
    const device = await openChain(storage, { format: 'vhdx', writable: true })
    for (const [offset, length, pattern] of writes) await device.write(offset, new Uint8Array(length).fill(pattern))
    await device.close()
  }
  return storage
}

const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)

/**
 * A differencing disk built from the spec (qemu-img cannot make one): `dynamic` (1 MiB blocks,
 * its metadata region at `metadataOffset`) gets the has-parent flag, a VHDX parent locator
 * naming `parent`, and block `partialBlock` made partially present with a sector bitmap block
 * appended whose bits mark the sectors in `present` ([first, count] in 512-byte sectors).
 */
export function buildDifferencingVhdx(dynamic: Uint8Array, parent: string, partialBlock: number, present: [number, number][]): Uint8Array {
  const batOffset = u64(dynamic, 0x30000 + 16 + 16)
  const metadataOffset = u64(dynamic, 0x30000 + 16 + 32 + 16)
  const locator = encodeParentLocator({ locatorType: PARENT_VHDX_GUID, entries: new Map([['parent_linkage', '{00000000-0000-0000-0000-000000000000}'], ['relative_path', `.\\${parent}`], ['absolute_win32_path', `C:\\${parent}`]]) })
  const bitmapAt = Math.ceil(dynamic.length / MiB) * MiB
  const out = new Uint8Array(bitmapAt + MiB)
  out.set(dynamic)
  // File parameters: has parent.
  dv(out).setUint32(metadataOffset + 64 * 1024 + 4, 2, true)
  // Metadata entry 5: the parent locator after the five items (which end at 64 KiB + 40).
  const entry = metadataOffset + 32 + 5 * 32
  const item = 64 * 1024 + 64
  const guid = new Uint8Array(16)
  const hexText = PARENT_LOCATOR_GUID.replace(/-/g, '')
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]
  for (let i = 0; i < 16; i++) guid[i] = parseInt(hexText.slice(order[i]! * 2, order[i]! * 2 + 2), 16)
  out.set(guid, entry)
  dv(out).setUint32(entry + 16, item, true)
  dv(out).setUint32(entry + 20, locator.length, true)
  dv(out).setUint32(entry + 24, 4, true)
  dv(out).setUint16(metadataOffset + 10, 6, true)
  out.set(locator, metadataOffset + item)
  // The sector bitmap of chunk 0 (BAT index chunkRatio = 4096 for 1 MiB blocks of 512-byte sectors).
  dv(out).setUint32(batOffset + 4096 * 8, (bitmapAt / MiB) * 2 ** 20 + 6, true)
  dv(out).setUint32(batOffset + 4096 * 8 + 4, 0, true)
  for (const [first, count] of present) {
    for (let s = first; s < first + count; s++) {
      const bit = partialBlock * 2048 + s
      out[bitmapAt + (bit >> 3)]! |= 1 << (bit & 7)
    }
  }
  const e = batOffset + partialBlock * 8
  dv(out).setUint32(e, (dv(out).getUint32(e, true) & 0xfff00000) | 7, true)
  // Blocks that read as zeros in a dynamic disk: not present, so the parent shows through.
  for (let i = 0; i < 4096; i++) if ((dv(out).getUint32(batOffset + i * 8, true) & 7) === 2) dv(out).setUint32(batOffset + i * 8, 0, true)
  return out
}
