// Host clusters for data and tables (QEMU's qcow2_alloc_host_offset / qcow2_alloc_clusters):
// a request's clusters stay contiguous where the space right after its last piece is free.
import type { Contiguity, HostRun } from '../../format/unit-allocator.js'
import { flushLocked } from './flush.js'
import type { WriterState } from './state.js'

/**
 * QEMU frees clusters at once and its allocator reuses them (free_cluster_index moves back on
 * a free). Here frees wait until the tables that dropped the references are durable, so before
 * an allocation that could reuse a cluster, that write-back runs now: the image allocates (and
 * grows) as QEMU's does, and a crash still leaves only leaks.
 */
export async function beforeAllocation(s: WriterState): Promise<void> {
  if (s.refcounts.hasPendingFrees && (await s.refcounts.freesWouldRelease())) await flushLocked(s, { lazy: true })
}

export async function allocateClusters(s: WriterState, count: number): Promise<number> {
  await beforeAllocation(s)
  return s.refcounts.allocate(count)
}

/**
 * Host space for `count` guest clusters from `guestCluster`; maybe fewer (the count is
 * returned). Like QEMU's qcow2_alloc_host_offset, a write keeps its host space contiguous:
 * after a piece that ended at `contiguity.nextHost`, clusters free right there are taken
 * first (qcow2_alloc_clusters_at); where none or too few are, the rest is allocated anew.
 */
export async function allocateData(s: WriterState, guestCluster: number, count: number, contiguity: Contiguity = {}): Promise<HostRun> {
  const cs = s.ctx.geometry.clusterSize
  if (s.ctx.hasDataFile) return { hostOffset: guestCluster * cs, count } // identity mapped
  await beforeAllocation(s)
  // Past every cluster ever allocated (the file's end at open, grown by each allocation, cut by
  // a truncate): nothing was ever written there, so it reads as zeros. With guest bytes stored
  // as they are (not encrypted), a partial write there need not write the zeros around it.
  const end = s.refcounts.endCluster
  const plain = s.data === s.storage && s.guestNumbered === undefined
  const at = contiguity.nextHost
  const taken = at === undefined ? 0 : await s.refcounts.allocateAt(at, count)
  if (taken > 0) {
    // Fewer than asked: the rest starts a new allocation (QEMU's next request iteration).
    contiguity.nextHost = taken < count ? undefined : at! + taken * cs
    return { hostOffset: at!, count: taken, fresh: plain && at! >= end * cs }
  }
  const hostOffset = await s.refcounts.allocate(count)
  contiguity.nextHost = hostOffset + count * cs
  return { hostOffset, count, fresh: plain && hostOffset >= end * cs }
}
