// The one state object of a QCOW2 writer (what QEMU keeps in BDRVQcow2State for writing): the
// tables, the refcount manager, the metadata mutex and the dirty flags the ordered flush reads.
// Every write step is a function over it (the files beside this one).
import { ImageError } from '../../errors.js'
import type { Storage } from '../../io/storage.js'
import type { EncryptedStorage } from '../../crypto/encrypted-storage.js'
import type { DataTarget } from '../crypto/encryption.js'
import { Mutex } from '../lock.js'
import type { LookupContext } from '../lookup.js'
import type { RefcountManager } from '../refcount.js'
import type { WriterHost } from '../writer-types.js'
import { InFlight, type OverlapMap } from '../writer-support.js'

export interface WriterState {
  readonly mutex: Mutex
  readonly ctx: LookupContext
  /** The image file (metadata). */
  readonly storage: Storage
  /** Where guest data goes: the image file, an encrypting view of it, or the external data file. */
  readonly data: Storage
  /** Legacy AES: guest data goes here instead, its sectors numbered by guest offset. */
  readonly guestNumbered: EncryptedStorage | undefined
  readonly refcounts: RefcountManager
  readonly host: WriterHost
  readonly version: number
  readonly hasBacking: boolean
  /** data_file_raw: the external data file stays a valid raw image of the disk. */
  readonly rawDataFile: boolean
  l1Offset: number
  l1Dirty: boolean
  /** Guest data written since the last flush (it must reach the disk before the tables). */
  dataDirty: boolean
  started: boolean
  /** Requests since the last flush reached the disk (QEMU's write_gen / flushed_gen). */
  writesSinceFlush: boolean
  /** Host cluster → metadata structure, for the overlap check; rebuilt after metadata moves. */
  overlaps: OverlapMap | undefined
  overlapsEpoch: number
  corrupt: boolean
  /** Lock-free in-place writes in progress; frees and flushes wait for them. */
  readonly inFlight: InFlight
}

export interface WriterOptions {
  version: number
  hasBacking: boolean
  rawDataFile?: boolean
}

export function createWriterState(ctx: LookupContext, storage: Storage, target: DataTarget, refcounts: RefcountManager, host: WriterHost, options: WriterOptions): WriterState {
  return {
    mutex: new Mutex(), ctx, storage, data: target.data, guestNumbered: target.guestNumbered, refcounts, host,
    version: options.version, hasBacking: options.hasBacking, rawDataFile: options.rawDataFile ?? false,
    l1Offset: 0, l1Dirty: false, dataDirty: false, started: false, writesSinceFlush: false,
    overlaps: undefined, overlapsEpoch: 0, corrupt: false, inFlight: new InFlight(),
  }
}

/** The first change of the session: lazy refcounts set the dirty bit before it. */
export async function start(s: WriterState): Promise<void> {
  if (s.started) return
  s.started = true
  await s.host.beforeFirstWrite()
}

export function checkRange(s: WriterState, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > s.ctx.virtualSize) {
    throw new ImageError('OUT_OF_RANGE', `${s.storage.name}: write of ${length} bytes at ${offset} is outside the image (${s.ctx.virtualSize} bytes)`)
  }
}
