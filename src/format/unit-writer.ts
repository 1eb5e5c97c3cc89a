// The generic write path for formats that allocate whole units (QCOW clusters, VDI blocks):
// a driver says where a unit lives and allocates; copy-on-write of partial units, the order of
// data and metadata writes, and serialization of concurrent allocations live here, once.
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import type { GuestReader } from './driver.js'

/** What a unit-allocating format gives the generic write path. */
export interface UnitAllocator {
  /** Guest bytes per allocation unit (a power of two, or any size for formats that allow it). */
  readonly unitSize: number
  /** Guest-visible size: the last unit may be partial. */
  readonly virtualSize: number
  /** Where unit data is written. */
  readonly dataStorage: Storage
  /** Name for messages. */
  readonly name: string
  /**
   * Host offset of `guestUnit`'s bytes when this layer holds them as plain data that can be
   * overwritten in place; undefined when the unit is unallocated, zero, compressed or encrypted
   * (then a write reads the unit's current guest content and allocates a new unit).
   */
  writableUnitOffset(guestUnit: number): Promise<number | undefined>
  /** Reserves host space for a whole unit and returns its offset (nothing points at it yet). */
  allocateUnit(guestUnit: number): Promise<number>
  /**
   * Makes the metadata point `guestUnit` at `hostOffset`, after its data was written, so a crash
   * leaves at worst an unreferenced unit (a leak), never a unit pointing at unwritten space.
   */
  linkUnit(guestUnit: number, hostOffset: number): Promise<void>
  /** Optional: transforms a whole unit's plain bytes before they are stored (encryption). */
  encodeUnit?(guestUnit: number, hostOffset: number, plain: Uint8Array): Uint8Array | Promise<Uint8Array>
}

/** Per-unit locks, so two writes into one unallocated unit never allocate it twice. */
export class UnitLocks {
  readonly #held = new Map<number, Promise<void>>()

  /** Runs `work` while holding `unit`'s lock. */
  async with<T>(unit: number, work: () => Promise<T>): Promise<T> {
    for (let held = this.#held.get(unit); held; held = this.#held.get(unit)) await held
    let release!: () => void
    this.#held.set(unit, new Promise<void>((resolve) => { release = resolve }))
    try {
      return await work()
    } finally {
      this.#held.delete(unit)
      release()
    }
  }
}

/**
 * Writes `data` at guest `offset` through `allocator`: in-place where a unit is plain data,
 * otherwise the unit's current content (from `readGuest`, the whole chain) is merged with the new
 * bytes, written to a newly allocated unit, and linked.
 */
export async function writeUnits(allocator: UnitAllocator, locks: UnitLocks, offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
  const end = offset + data.length
  if (offset < 0 || end > allocator.virtualSize) {
    throw new ImageError('OUT_OF_RANGE', `${allocator.name}: write of ${data.length} bytes at ${offset} is outside the image (${allocator.virtualSize} bytes)`)
  }
  const unitSize = allocator.unitSize
  const pending: Promise<void>[] = []
  for (let at = offset; at < end;) {
    const unit = Math.floor(at / unitSize)
    const unitStart = unit * unitSize
    const pieceEnd = Math.min(end, unitStart + unitSize)
    const piece = data.subarray(at - offset, pieceEnd - offset)
    const within = at - unitStart
    pending.push(locks.with(unit, () => writeOneUnit(allocator, unit, within, piece, readGuest)))
    at = pieceEnd
  }
  await Promise.all(pending)
}

async function writeOneUnit(allocator: UnitAllocator, unit: number, within: number, piece: Uint8Array, readGuest: GuestReader): Promise<void> {
  const unitSize = allocator.unitSize
  const unitStart = unit * unitSize
  const existing = await allocator.writableUnitOffset(unit)
  if (existing !== undefined && !allocator.encodeUnit) {
    await allocator.dataStorage.write(existing + within, piece)
    return
  }
  // Copy-on-write: the whole unit as the guest sees it now, with the new bytes over it. The
  // guest part of a last, partial unit is read; the rest of the unit is stored as zeros.
  const guestBytes = Math.min(unitSize, allocator.virtualSize - unitStart)
  let whole: Uint8Array
  if (within === 0 && piece.length === unitSize) {
    whole = piece
  } else {
    whole = new Uint8Array(unitSize)
    if (within > 0 || piece.length < guestBytes) whole.set(await readGuest(unitStart, guestBytes))
    whole.set(piece, within)
  }
  const hostOffset = existing ?? await allocator.allocateUnit(unit)
  const stored = allocator.encodeUnit ? await allocator.encodeUnit(unit, hostOffset, whole) : whole
  await allocator.dataStorage.write(hostOffset, stored)
  if (existing === undefined) await allocator.linkUnit(unit, hostOffset)
}
