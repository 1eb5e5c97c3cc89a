// The QCOW2 write engine, assembled: core (state, ordered flush) ← data path ← zero path, and
// the write-back at close.
import { ZeroingWriter } from './writer-zero.js'

export type { GuestReader, TableAccess, WriterHost, ZeroOptions } from './writer-core.js'

/** Writes to one QCOW2 layer. All metadata changes run under one mutex; reads never wait. */
export class Qcow2Writer extends ZeroingWriter {
  /**
   * Writes everything back at close, as QEMU's qcow2_inactivate: the L2 cache (with the refcount
   * blocks it depends on), then the refcount cache, each write followed by a flush of the file;
   * a cache that could not be written is reported, one message each.
   */
  closeFlush(): Promise<string[]> {
    return this.mutex.run(async () => {
      const failures: string[] = []
      const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
        try {
          await fn()
          // Only a storage listening for events (blkdebug) gets the extra flush: it tests its failure.
          if (this.storage.debugEvent) await this.storage.flush()
        } catch (e) {
          failures.push(`Failed to flush the ${what} cache: ${e instanceof Error ? e.message : String(e)}`)
        }
      }
      await attempt('L2 table', () => this.flushLocked({ lazy: true }))
      await attempt('refcount block', () => this.refcounts.writeBlocks())
      return failures
    })
  }
}
