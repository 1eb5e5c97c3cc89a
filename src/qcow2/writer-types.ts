// The shapes the QCOW2 writer's parts share: what the host image gives the writer, the access
// commands get to its tables (TableAccess), decoded L2 entries and zero-write options.
import type { Storage } from '../io/storage.js'
import type { L2Entry } from './entries.js'
import type { LookupContext } from './lookup.js'
import type { RefcountManager } from './refcount.js'

/** Reads current guest content (this image over its backing chain), for copy-on-write. */
export type { GuestReader } from '../format/driver.js'

/** What the writer changes in the image besides tables. */
export interface WriterHost {
  /** Writes the L1 table size and offset (header bytes 36-47) durably. */
  switchL1(offset: number, entries: number): Promise<void>
  /** Called before the first change is written (lazy refcounts: set the dirty bit). */
  beforeFirstWrite(): Promise<void>
  /** Metadata the header points to besides tables the writer knows (snapshot table and L1s, bitmaps, LUKS header). */
  metadataRanges(): { offset: number; length: number; what: string }[]
  /** Sets the corrupt bit (QEMU's qcow2_signal_corruption). */
  markCorrupt(): Promise<void>
  /**
   * Lazy refcounts with the dirty bit set: refcounts on disk may lag behind the tables until
   * close (QEMU's qcow2_need_accurate_refcounts is false then).
   */
  refcountsMayLag(): boolean
}


/** Options for zero writes, as qemu-io's write -z [-u]. */
export interface ZeroOptions {
  /** May deallocate clusters (BDRV_REQ_MAY_UNMAP). */
  unmap?: boolean
  /**
   * Whether guest bytes read as zeros through the whole chain by block status (QEMU's is_zero):
   * lets a zero write that covers part of a subcluster zero all of it. Without it, such parts
   * are written as real zeros.
   */
  readsAsZero?: (offset: number, length: number) => Promise<boolean>
}

export type Decoded = { entry: L2Entry; allocated: number; zero: number }

export { ALL_SUBUNITS as ALL_SUBCLUSTERS } from '../format/unit-writer.js'

/** Direct table access for structural changes (see {@link Qcow2Writer.withTables}). */
export interface TableAccess {
  ctx: LookupContext
  storage: Storage
  refcounts: RefcountManager
  /** Host offset of the active L1 table. */
  l1Offset: number
  markL1Dirty(): void
  /**
   * Writes guest data at a host offset (encrypted when the image is; overlap-checked);
   * `guestOffset` is where it lies in the guest (legacy AES numbers sectors by it).
   */
  writeData(hostOffset: number, bytes: Uint8Array, guestOffset: number): Promise<void>
  /** The ordered write-back (data, refcounts, L2, L1, frees). */
  flush(): Promise<void>
  /** The same write-back when the caches hold too many changed tables (memory stays bounded). */
  writeBackIfFull(): Promise<void>
}

