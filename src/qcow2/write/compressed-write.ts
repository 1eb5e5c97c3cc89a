// Compressed clusters (qcow2_co_pwritev_compressed_task): only into a cluster that holds
// nothing yet, each stream packed after the previous one (qcow2_alloc_compressed_cluster_offset).
import { ImageError } from '../../errors.js'
import { l2Index } from '../geometry.js'
import { readL2Entry } from '../lookup.js'
import { beforeAllocation } from './allocate.js'
import { writeData } from './data-write.js'
import { perTable } from './flush.js'
import { setEntry, writableL2 } from './l2-update.js'
import { checkRange, type WriterState } from './state.js'

/** Stores an already compressed cluster at `guestOffset` (cluster aligned). */
export async function writeCompressed(s: WriterState, guestOffset: number, compressed: Uint8Array): Promise<void> {
  const g = s.ctx.geometry
  if (guestOffset % g.clusterSize !== 0) throw new ImageError('INVALID_ARGUMENT', `compressed writes must be cluster aligned (offset ${guestOffset})`)
  if (s.ctx.hasDataFile) throw new ImageError('UNSUPPORTED', `${s.storage.name}: compressed writes are not possible with an external data file`)
  checkRange(s, guestOffset, 1)
  await perTable(s, guestOffset, 1, async () => {
    const table = await writableL2(s, guestOffset)
    const index = l2Index(g, guestOffset)
    const decoded = readL2Entry(s.ctx, table, index)
    const e = decoded.entry
    if (!(e.kind === 'unallocated' || (e.kind === 'zero' && e.hostOffset === undefined)) || decoded.allocated !== 0) {
      throw new ImageError('INVALID_ARGUMENT', `${s.storage.name}: compression can't overwrite anything (cluster at ${guestOffset} is allocated)`)
    }
    await beforeAllocation(s)
    const hostOffset = await s.refcounts.allocateBytes(compressed.length)
    await writeData(s, hostOffset, compressed, guestOffset)
    // Reads clamp a compressed stream to the file's end: the file grew past the size seen at open.
    s.ctx.fileSize = Math.max(s.ctx.fileSize, hostOffset + compressed.length)
    const sectorCount = Math.floor((hostOffset + compressed.length - 1) / 512) - Math.floor(hostOffset / 512) + 1
    setEntry(s, table, index, { kind: 'compressed', hostOffset, sectorCount }, { allocated: 0, zero: 0 })
  })
}
