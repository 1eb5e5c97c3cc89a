// Per-unit locks for formats without a metadata mutex (VDI, QCOW): two writes into one
// unallocated unit never allocate it twice.
import type { UnitAllocator, UnitMap } from './unit-allocator.js'

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

/** An `exclusive` for a one-unit region: `map` runs under that unit's lock. */
export function lockingUnits(locks: UnitLocks, unitSize: number, map: UnitMap): UnitAllocator['exclusive'] {
  return (start, _end, work) => locks.with(Math.floor(start / unitSize), () => work(map))
}
