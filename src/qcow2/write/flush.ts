// The ordered write-back that makes a crash at any point leave only leaks (qcow2.rst "Reference
// count"; QEMU's cache dependencies, qcow2_cache_set_dependency): data → refcounts → L2 → L1,
// then frees; and the locked region every metadata change runs in.
import { forEachRegion } from '../../format/unit-split.js'
import { l2Coverage } from '../geometry.js'
import { invalidateOverlaps } from './data-write.js'
import { start, type WriterState } from './state.js'

/** Dirty refcount blocks, then a changed refcount table, each durable (the flush's step 2). */
export async function writeRefcounts(s: WriterState): Promise<boolean> {
  const refs = s.refcounts
  if (refs.cache.dirtyCount === 0 && !refs.reftableDirty) return false
  await refs.writeBlocks()
  await s.storage.flush()
  if (refs.reftableDirty) {
    await refs.writeReftable()
    await s.storage.flush()
  }
  return true
}

/**
 * The ordered write-back. With `lazy` (routine flushes) and lazy refcounts in force, refcount
 * blocks stay in memory as in QEMU's qcow2_write_caches: a killed process leaves the counts
 * stale and the dirty bit set. A new refcount block is still written with the table entry
 * that points to it (alloc_refcount_block flushes both).
 */
export async function flushLocked(s: WriterState, options: { lazy?: boolean } = {}): Promise<void> {
  const l2 = s.ctx.l2Cache
  const refs = s.refcounts
  const lazy = options.lazy === true && s.host.refcountsMayLag() && !refs.reftableDirty
  await s.inFlight.drained()
  // 1. Guest data before anything points to it.
  if (s.dataDirty && s.ctx.hasDataFile) await s.data.flush()
  // 2. Refcount increments before the tables that use the clusters.
  if ((lazy || !(await writeRefcounts(s))) && s.dataDirty) await s.storage.flush()
  s.dataDirty = false
  // 3. L2 tables, then the L1 entries that point to new ones.
  const dirtyL2 = l2.dirtyTables()
  for (const table of dirtyL2) {
    s.storage.debugEvent?.('l2_update')
    await s.storage.write(table.hostOffset, table.bytes)
    // The file grew: an evicted table past the size seen at open must load again.
    s.ctx.fileSize = Math.max(s.ctx.fileSize, table.hostOffset + table.bytes.length)
    l2.markClean(table)
  }
  if (dirtyL2.length > 0) await s.storage.flush()
  if (s.l1Dirty) {
    const l1 = s.ctx.l1
    s.storage.debugEvent?.('l1_update')
    await s.storage.write(s.l1Offset, new Uint8Array(l1.buffer, l1.byteOffset, l1.byteLength))
    await s.storage.flush()
    s.l1Dirty = false
  }
  // 4. Only now may clusters that lost their last reference be reused.
  if (refs.hasPendingFrees) {
    const freed = await refs.applyFrees()
    invalidateOverlaps(s)
    for (const cluster of freed) l2.forget(cluster * s.ctx.geometry.clusterSize)
    if (!lazy) {
      await refs.writeBlocks()
      await s.storage.flush()
    }
  }
}

/** Writes dirty metadata back when the caches hold too much of it (QEMU evicts dirty entries). */
export async function maybeWriteBack(s: WriterState): Promise<void> {
  const l2 = s.ctx.l2Cache
  const refcountsFull = s.refcounts.cache.dirtyCount > s.refcounts.cache.capacity / 2
  // A full refcount cache is written even with lazy refcounts (QEMU evicts dirty blocks).
  if (l2.dirtyCount > l2.capacity / 2 || refcountsFull) await flushLocked(s, { lazy: !refcountsFull })
}

/** Runs one metadata change under the lock; the caches are written back when they fill up. */
export function locked(s: WriterState, fn: () => Promise<void>): Promise<void> {
  return s.mutex.run(async () => {
    await start(s)
    s.writesSinceFlush = true
    await fn()
    await maybeWriteBack(s)
  })
}

/** Splits `[offset, offset+length)` at L2 table boundaries and runs `fn` per piece under the lock. */
export function perTable(s: WriterState, offset: number, length: number, fn: (start: number, end: number) => Promise<void>): Promise<void> {
  return forEachRegion(offset, length, l2Coverage(s.ctx.geometry), (from, to) => locked(s, () => fn(from, to)))
}

/** Makes every completed write durable, in dependency order (bdrv_co_flush). */
export function flush(s: WriterState): Promise<void> {
  return s.mutex.run(async () => {
    // bdrv_co_flush: flush_to_os, the caches written, flush_to_disk, then the file's own flush.
    // Only a storage listening for events (blkdebug) gets that last flush: it tests its failure.
    const events = s.storage.debugEvent !== undefined
    if (events) s.storage.debugEvent!('flush_to_os')
    await flushLocked(s, { lazy: true })
    if (events && s.writesSinceFlush) {
      s.storage.debugEvent!('flush_to_disk')
      await s.storage.flush()
    }
    s.writesSinceFlush = false
  })
}

/**
 * Writes everything back at close, as QEMU's qcow2_inactivate: the L2 cache (with the refcount
 * blocks it depends on), then the refcount cache, each write followed by a flush of the file;
 * a cache that could not be written is reported, one message each.
 */
export function closeFlush(s: WriterState): Promise<string[]> {
  return s.mutex.run(async () => {
    const failures: string[] = []
    const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn()
        // Only a storage listening for events (blkdebug) gets the extra flush: it tests its failure.
        if (s.storage.debugEvent) await s.storage.flush()
      } catch (e) {
        failures.push(`Failed to flush the ${what} cache: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
    await attempt('L2 table', () => flushLocked(s, { lazy: true }))
    await attempt('refcount block', () => s.refcounts.writeBlocks())
    return failures
  })
}
