// The QCOW2 write engine's facade: one state object (write/state.ts) and the functions over it
// (write/*.ts), guest data through the generic write path (format/unit-writer.ts).
import type { Storage } from '../io/storage.js'
import { writeUnits, type UnitAllocator } from '../format/unit-writer.js'
import type { DataTarget } from './crypto/encryption.js'
import type { LookupContext } from './lookup.js'
import type { RefcountManager } from './refcount.js'
import type { GuestReader, TableAccess, WriterHost, ZeroOptions } from './writer-types.js'
import { writeCompressed } from './write/compressed-write.js'
import { deallocate, discard } from './write/discard.js'
import { closeFlush, flush } from './write/flush.js'
import { preallocate } from './write/preallocate.js'
import { createWriterState, type WriterOptions, type WriterState } from './write/state.js'
import { growL1, truncateUnused, withTables } from './write/structure.js'
import { qcow2Units } from './write/units.js'
import { writeZeroes } from './write/zero.js'

export type { GuestReader, TableAccess, WriterHost, ZeroOptions } from './writer-types.js'

/** Writes to one QCOW2 layer. All metadata changes run under one mutex; reads never wait. */
export class Qcow2Writer {
  readonly #state: WriterState
  readonly #units: UnitAllocator

  constructor(ctx: LookupContext, storage: Storage, target: DataTarget, refcounts: RefcountManager, host: WriterHost, options: WriterOptions) {
    this.#state = createWriterState(ctx, storage, target, refcounts, host, options)
    this.#units = qcow2Units(this.#state)
  }

  get mutex(): WriterState['mutex'] {
    return this.#state.mutex
  }

  get refcounts(): RefcountManager {
    return this.#state.refcounts
  }

  /** Where the active L1 table lives (set by the image). */
  setL1Offset(offset: number): void {
    this.#state.l1Offset = offset
  }

  /** Writes guest bytes. `readGuest` supplies old content for partial clusters. */
  write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    return writeUnits(this.#units, offset, data, readGuest)
  }

  writeCompressed(guestOffset: number, compressed: Uint8Array): Promise<void> {
    return writeCompressed(this.#state, guestOffset, compressed)
  }

  writeZeroes(offset: number, length: number, readGuest: GuestReader, options: ZeroOptions = {}): Promise<void> {
    return writeZeroes(this.#state, (at, data, reader) => this.write(at, data, reader), offset, length, readGuest, options)
  }

  discard(offset: number, length: number): Promise<void> {
    return discard(this.#state, offset, length)
  }

  preallocate(offset: number, length: number, mode: 'metadata' | 'falloc' | 'full'): Promise<void> {
    return preallocate(this.#state, offset, length, mode)
  }

  deallocate(offset: number, length: number): Promise<void> {
    return deallocate(this.#state, offset, length)
  }

  growL1(entries: number): Promise<DataView> {
    return growL1(this.#state, entries)
  }

  truncateUnused(): Promise<void> {
    return truncateUnused(this.#state)
  }

  withTables<T>(fn: (access: TableAccess) => Promise<T>): Promise<T> {
    return withTables(this.#state, fn)
  }

  flush(): Promise<void> {
    return flush(this.#state)
  }

  closeFlush(): Promise<string[]> {
    return closeFlush(this.#state)
  }
}
