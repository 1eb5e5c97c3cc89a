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
