// What a unit-allocating format (qcow2 and QCOW clusters, VDI blocks) gives the generic write
// path (unit-writer.ts): where a guest unit lives now, host space for a run of units, the data
// write, and the metadata link. The driver decides; the generic layer orders the steps.
import type { GuestReader } from './driver.js'

export type { GuestReader }

/** How one guest unit takes a write (the driver's answer for that unit). */
export type UnitPlan =
  /**
   * Plain data of this layer, overwritten where it is. `filled` (subunit formats): bit i set
   * when subunit i holds data here; a partly written subunit without it is completed from the
   * current content (copy-on-write at subunit granularity).
   */
  | { kind: 'inPlace'; hostOffset: number; filled?: number }
  /**
   * The unit keeps its host space but is written whole: the untouched rest comes from zeros
   * (`fill: 'zeros'`: a zero cluster that kept its allocation) or from the current content
   * (`'guest'`: an encrypted unit); `link` when the metadata must then point at it.
   */
  | { kind: 'rewrite'; hostOffset: number; fill: 'zeros' | 'guest'; link: boolean }
  /**
   * New host space is needed. `carry` (subunit formats): the old content must move whole into
   * the new unit first (it held data or was compressed). `reads`: what the unit reads as now,
   * where the driver knows without reading: `'zeros'` (a zero unit, or nothing here and no
   * backing file), `'below'` (nothing in this layer: the backing chain's content); absent when
   * the unit holds data of its own (compressed, shared with a snapshot).
   */
  | { kind: 'allocate'; carry?: boolean; reads?: 'zeros' | 'below' }

/** Where a request's host space continues (QEMU's qcow2_alloc_host_offset keeps it contiguous). */
export interface Contiguity {
  nextHost?: number | undefined
}

/** Subunits a write touched, first and last index inside their unit. */
export interface SubunitSpan {
  first: number
  last: number
}

/** Host space reserved for a run of units. */
export interface HostRun {
  hostOffset: number
  count: number
  /**
   * The space reads as zeros now and never held anything (it lies past the file's old end) and
   * guest bytes are stored there as they are (no encryption, no external data file): a partial
   * write then writes only its own bytes, as QEMU's handle_alloc_space skips a zero copy-on-write
   * (with {@link UnitMap.zeroFresh}).
   */
  fresh?: boolean
}

/** The driver's view of one locked region (qcow2: one L2 table under its metadata mutex). */
export interface UnitMap {
  plan(guestUnit: number): Promise<UnitPlan>
  /**
   * Reserves host space for up to `count` units from `guestUnit` (nothing points at it yet);
   * maybe fewer, the count is returned. May update `contiguity` to keep the next piece adjacent.
   */
  allocateRun(guestUnit: number, count: number, contiguity: Contiguity): Promise<HostRun>
  /** Writes guest bytes at a host offset (the driver encrypts, checks overlaps, marks dirty). */
  writeData(hostOffset: number, bytes: Uint8Array, guestOffset: number): Promise<void>
  /**
   * Makes fresh space ({@link HostRun.fresh}) read as zeros without writing them where the host
   * can, the file extended over all of it; ordered like data, before any link to it.
   */
  zeroFresh?(hostOffset: number, length: number): Promise<void>
  /**
   * Points `count` units from `guestUnit` at consecutive units from `hostOffset`, after their
   * data was written: a crash then leaves at worst an unreferenced unit (a leak), never a unit
   * pointing at unwritten space. `subunits`: which subunits of the (single) unit were written.
   */
  linkRun(guestUnit: number, count: number, hostOffset: number, subunits?: SubunitSpan): Promise<void>
  /** Called before a copy-on-write read of a partial unit (blkdebug's cow_read). */
  beforeCopyOnWrite?(): void
  /** Called when fresh space takes a partial write without copy-on-write (cluster_alloc_space). */
  beforeFreshWrite?(): void
}

/** A piece of a lock-free overwrite: guest bytes `[from, to)` of the request go to `hostOffset`. */
export interface HostPiece {
  hostOffset: number
  from: number
  to: number
}

/** What a unit-allocating format gives the generic write path. */
export interface UnitAllocator {
  /** Guest bytes per allocation unit. */
  readonly unitSize: number
  /** Guest bytes per subunit with their own allocation state (qcow2 extended L2), if any. */
  readonly subunitSize?: number
  /** Guest-visible size: the last unit may be partial. */
  readonly virtualSize: number
  /** Name for messages. */
  readonly name: string
  /** Guest bytes locked together (a multiple of unitSize; default one unit). */
  readonly regionSize?: number
  /** Newly allocated units are written whole, zero-padded past the guest's end (VDI, QCOW). */
  readonly padUnits?: boolean
  /** Runs `work` with the region `[start, end)` locked against other writers. */
  exclusive(start: number, end: number, work: (map: UnitMap) => Promise<void>): Promise<void>
  /**
   * Optional lock-free overwrite: `run` wraps the attempt (qcow2 tracks it so frees wait);
   * `map` gives host pieces when every unit of the range is plain data, else undefined.
   */
  readonly overwrite?: {
    run(work: () => Promise<boolean>): Promise<boolean>
    map(offset: number, length: number): Promise<HostPiece[] | undefined>
    writeData(hostOffset: number, bytes: Uint8Array, guestOffset: number): Promise<void>
  }
}
