// Guest data to the host: the overlap check (QEMU's qcow2_pre_write_overlap_check, "cached"
// template plus snapshot L1s) and the write itself, plain, encrypted, or legacy-AES numbered.
import { ImageError } from '../../errors.js'
import { OverlapMap } from '../writer-support.js'
import type { WriterState } from './state.js'

/** Forgets the overlap map (metadata was allocated, moved or freed). */
export function invalidateOverlaps(s: WriterState): void {
  s.overlaps = undefined
}

/** Which clusters hold metadata ("cached" overlap template of QEMU, plus snapshot L1s). */
function buildOverlaps(s: WriterState): OverlapMap {
  const cs = s.ctx.geometry.clusterSize
  const map = new OverlapMap()
  map.addRange(0, cs, 'qcow2_header')
  map.addRange(s.l1Offset, Math.max(8, s.ctx.l1.byteLength), 'active L1 table')
  for (let i = 0; i < s.ctx.l1.byteLength / 8; i++) {
    const offset = (s.ctx.l1.getUint32(i * 8) & 0x00ff_ffff) * 2 ** 32 + ((s.ctx.l1.getUint32(i * 8 + 4) & 0xffff_fe00) >>> 0)
    if (offset) map.addCluster(Math.floor(offset / cs), 'active L2 table')
  }
  map.addRange(s.refcounts.layout.reftableOffset, s.refcounts.layout.reftableClusters * cs, 'refcount table')
  for (const offset of s.refcounts.blockOffsets()) map.addCluster(Math.floor(offset / cs), 'refcount block')
  for (const r of s.host.metadataRanges()) map.addRange(r.offset, r.length, r.what)
  return map
}

/**
 * Guest data goes to the host through here: a write onto metadata marks the image corrupt
 * and stops, as QEMU's overlap check does. `guestOffset` is where the bytes lie in the guest
 * (legacy AES numbers its sectors by it; congruent to `hostOffset` modulo the cluster size).
 * The data is then dirty: the next flush syncs it before any table that points to it.
 */
export async function writeData(s: WriterState, hostOffset: number, bytes: Uint8Array, guestOffset: number): Promise<void> {
  await checkDataWrite(s, hostOffset, bytes.length)
  await s.storage.debugEvent?.('write_aio')
  if (s.guestNumbered) await s.guestNumbered.writeNumbered(hostOffset, bytes, guestOffset)
  else await s.data.write(hostOffset, bytes)
  s.dataDirty = true
}

/** One zero byte: extends a file over fresh space without writing the rest. */
const ZERO_BYTE = new Uint8Array(1)

/**
 * Makes fresh space (past the file's old end, not encrypted) read as zeros, the file extended
 * over it, as QEMU's handle_alloc_space zeroes it (bdrv_co_pwrite_zeroes, fallocate ZERO_RANGE
 * on a file); without a zeroing primitive one zero byte at its end does it (the rest a hole).
 * Dirty like data: durable before the tables that point to it.
 */
export async function zeroFresh(s: WriterState, hostOffset: number, length: number): Promise<void> {
  await checkDataWrite(s, hostOffset, length)
  if (s.data.writeZeroes) await s.data.writeZeroes(hostOffset, length)
  else await s.data.write(hostOffset + length - 1, ZERO_BYTE)
  s.dataDirty = true
}

/**
 * Refuses a data write onto metadata: the image is marked corrupt and the write stops, as
 * QEMU's overlap check does.
 */
async function checkDataWrite(s: WriterState, hostOffset: number, length: number): Promise<void> {
  if (s.corrupt) throw new ImageError('CORRUPT', `${s.storage.name}: image is marked corrupt; no more writes`, { file: s.storage.name })
  if (s.ctx.hasDataFile || length <= 0) return
  const cs = s.ctx.geometry.clusterSize
  if (s.overlapsEpoch !== s.refcounts.metadataEpoch) s.overlaps = undefined
  s.overlapsEpoch = s.refcounts.metadataEpoch
  s.overlaps ??= buildOverlaps(s)
  const hit = s.overlaps.find(hostOffset, length, cs)
  if (hit) {
    const at = hit.cluster * cs
    s.corrupt = true
    await s.host.markCorrupt()
    throw new ImageError('CORRUPT', `${s.storage.name}: Marking image as corrupt: Preventing invalid write on metadata (overlaps with ${hit.what}) at 0x${at.toString(16)}`, { offset: at, file: s.storage.name })
  }
}
