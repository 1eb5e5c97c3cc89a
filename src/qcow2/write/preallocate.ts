// Preallocation (qemu-img create/resize -o preallocation=metadata|falloc|full; QEMU's
// preallocate_co): L2 tables and data clusters for every unallocated cluster of the range.
import { l2Index } from '../geometry.js'
import { readL2Entry } from '../lookup.js'
import { allocateData } from './allocate.js'
import { writeData } from './data-write.js'
import { flushLocked, perTable } from './flush.js'
import { setEntry, writableL2 } from './l2-update.js'
import { checkRange, type WriterState } from './state.js'

/**
 * Allocates every unallocated cluster of the range (runs contiguously); `full` also writes
 * zeros. The file is extended over all allocated clusters so none lies past its end.
 */
export async function preallocate(s: WriterState, offset: number, length: number, mode: 'metadata' | 'falloc' | 'full'): Promise<void> {
  checkRange(s, offset, length)
  const g = s.ctx.geometry
  const cs = g.clusterSize
  const start = Math.floor(offset / cs) * cs
  const end = Math.min(Math.ceil((offset + length) / cs) * cs, Math.ceil(s.ctx.virtualSize / cs) * cs)
  await perTable(s, start, end - start, async (from, to) => {
    const table = await writableL2(s, from)
    let position = from
    while (position < to) {
      // Runs of unallocated clusters become one contiguous allocation.
      let runEnd = position
      while (runEnd < to && readL2Entry(s.ctx, table, l2Index(g, runEnd)).entry.kind === 'unallocated') runEnd += cs
      if (runEnd === position) {
        position += cs
        continue
      }
      const count = (runEnd - position) / cs
      const { hostOffset } = await allocateData(s, position / cs, count)
      if (mode === 'full') {
        const zeros = new Uint8Array(Math.min(count * cs, 4 * 1024 * 1024))
        for (let at = 0; at < count * cs; at += zeros.length) await writeData(s, hostOffset + at, zeros.subarray(0, Math.min(zeros.length, count * cs - at)), position + at)
      }
      // Extended L2: the subclusters stay unallocated (QEMU leaves the bitmap alone for
      // preallocation), so a backing file still shows through.
      for (let i = 0; i < count; i++) setEntry(s, table, l2Index(g, position + i * cs), { kind: 'normal', hostOffset: hostOffset + i * cs, copied: true })
      position = runEnd
    }
  })
  await s.mutex.run(async () => {
    const dataEnd = s.ctx.hasDataFile ? end : s.refcounts.endCluster * cs
    const fileSize = await s.data.size()
    // falloc: the file grows with its new space reserved, as QEMU truncates its data file with
    // PREALLOC_MODE_FALLOC; where the host cannot reserve, it only grows.
    const reserved = mode === 'falloc' && fileSize < dataEnd && s.data.reserve !== undefined && await s.data.reserve(fileSize, dataEnd - fileSize)
    if (!reserved && fileSize < dataEnd) await s.data.truncate(dataEnd)
    await flushLocked(s)
  })
}
