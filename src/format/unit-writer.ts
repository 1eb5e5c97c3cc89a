// The generic write path for formats that allocate whole units (qcow2 and QCOW clusters, VDI
// blocks): a driver says where a unit lives and allocates (unit-allocator.ts); splitting into
// partial and whole units, copy-on-write of partial units from the chain, contiguous runs
// written at once, and the crash-safe order (data before the metadata that points at it) live
// here, once.
import { ImageError } from '../errors.js'
import type { Contiguity, GuestReader, HostRun, UnitAllocator, UnitMap, UnitPlan } from './unit-allocator.js'
import { forEachRegion } from './unit-split.js'

export type { Contiguity, GuestReader, HostPiece, HostRun, SubunitSpan, UnitAllocator, UnitMap, UnitPlan } from './unit-allocator.js'
export { UnitLocks, lockingUnits } from './unit-locks.js'

type AllocatePlan = Extract<UnitPlan, { kind: 'allocate' }>

/** Every subunit holds data (a unit whose old content moved into it whole). */
export const ALL_SUBUNITS = 0xffff_ffff

/** Throws OUT_OF_RANGE unless `[offset, offset+length)` lies inside the guest. */
export function checkGuestRange(allocator: Pick<UnitAllocator, 'name' | 'virtualSize'>, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > allocator.virtualSize) {
    throw new ImageError('OUT_OF_RANGE', `${allocator.name}: write of ${length} bytes at ${offset} is outside the image (${allocator.virtualSize} bytes)`)
  }
}

/**
 * Writes `data` at guest `offset`: lock-free where the driver can overwrite every unit in place,
 * otherwise region by region under the driver's lock, one request keeping its host space
 * contiguous across regions.
 */
export async function writeUnits(allocator: UnitAllocator, offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
  checkGuestRange(allocator, offset, data.length)
  if (await overwrite(allocator, offset, data)) return
  const contiguity: Contiguity = {}
  await forEachRegion(offset, data.length, allocator.regionSize ?? allocator.unitSize, (start, end) =>
    allocator.exclusive(start, end, (map) => writeInRegion(allocator, map, start, data.subarray(start - offset, end - offset), readGuest, contiguity)))
}

/** The lock-free fast path: every unit is plain data here, so no metadata changes. */
async function overwrite(allocator: UnitAllocator, offset: number, data: Uint8Array): Promise<boolean> {
  const fast = allocator.overwrite
  if (!fast) return false
  return fast.run(async () => {
    const pieces = await fast.map(offset, data.length)
    if (!pieces) return false
    for (const p of pieces) await fast.writeData(p.hostOffset, data.subarray(p.from, p.to), offset + p.from)
    return true
  })
}

/**
 * Writes `data` at guest `start` inside one locked region (the caller holds `map`'s lock):
 * unit by unit as the driver plans them, runs of units that need new space allocated together
 * and written with one data write.
 */
export async function writeInRegion(allocator: UnitAllocator, map: UnitMap, start: number, data: Uint8Array, readGuest: GuestReader, contiguity: Contiguity = {}): Promise<void> {
  const unitSize = allocator.unitSize
  const end = start + data.length
  const bytes = (from: number, to: number) => data.subarray(from - start, to - start)
  let position = start
  while (position < end) {
    const unit = Math.floor(position / unitSize)
    const unitStart = unit * unitSize
    const pieceEnd = Math.min(end, unitStart + unitSize)
    const plan = await map.plan(unit)
    if (plan.kind === 'inPlace') {
      if (allocator.subunitSize) await writeSubunits(allocator, map, unit, plan.hostOffset, plan.filled ?? 0, position, bytes(position, pieceEnd), readGuest)
      else await map.writeData(plan.hostOffset + (position - unitStart), bytes(position, pieceEnd), position)
      contiguity.nextHost = plan.hostOffset + unitSize
      position = pieceEnd
      continue
    }
    if (plan.kind === 'rewrite') {
      const guestEnd = Math.min(unitStart + unitSize, allocator.virtualSize)
      const buffer = new Uint8Array(allocator.padUnits ? unitSize : guestEnd - unitStart)
      if (plan.fill === 'guest' && (position > unitStart || pieceEnd < guestEnd)) buffer.set(await readGuest(unitStart, guestEnd - unitStart))
      buffer.set(bytes(position, pieceEnd), position - unitStart)
      await map.writeData(plan.hostOffset, buffer, unitStart)
      if (plan.link) await map.linkRun(unit, 1, plan.hostOffset)
      contiguity.nextHost = plan.hostOffset + unitSize
      position = pieceEnd
      continue
    }
    // A run of units that all need new space: allocated contiguously, written once.
    const plans = [plan]
    let runEnd = pieceEnd
    while (runEnd < end) {
      const next = await map.plan(unit + plans.length)
      if (next.kind !== 'allocate') break
      plans.push(next)
      runEnd = Math.min(end, runEnd + unitSize)
    }
    const run = await map.allocateRun(unit, plans.length, contiguity)
    if (run.count < plans.length) runEnd = Math.min(end, (unit + run.count) * unitSize)
    const carry = plans.map((p) => p.carry === true)
    if (allocator.subunitSize) await allocateSubunits(allocator, map, unit, run.count, run.hostOffset, carry, position, runEnd, bytes, readGuest)
    else await allocateWhole(allocator, map, unit, run, plans, position, bytes(position, runEnd), readGuest)
    position = runEnd
  }
}

/** New whole units for `piece` at guest `position`: the untouched head and tail from the chain. */
async function allocateWhole(allocator: UnitAllocator, map: UnitMap, unit: number, run: HostRun, plans: readonly AllocatePlan[], position: number, piece: Uint8Array, readGuest: GuestReader): Promise<void> {
  const { hostOffset, count } = run
  const unitSize = allocator.unitSize
  const runStart = unit * unitSize
  const headLength = position - runStart
  const runEnd = position + piece.length
  const lastUnitEnd = Math.min(runStart + count * unitSize, allocator.virtualSize)
  if (headLength === 0 && runEnd === lastUnitEnd && (!allocator.padUnits || piece.length === count * unitSize)) {
    // Whole units: the caller's bytes go straight to their new place.
    await map.writeData(hostOffset, piece, runStart)
  } else if (run.fresh && map.zeroFresh && await readsAsZero(plans[0]!, runStart, headLength, readGuest) && await readsAsZero(plans[count - 1]!, runEnd, lastUnitEnd - runEnd, readGuest)) {
    // Fresh space and a copy-on-write of zeros (QEMU's handle_alloc_space): the run is zeroed
    // cheaply, the file extended over it (so it reads as zeros after a crash too, before and
    // after anything links to it), then only the caller's bytes are written.
    map.beforeFreshWrite?.()
    await map.zeroFresh(hostOffset, count * unitSize)
    await map.writeData(hostOffset + headLength, piece, position)
  } else {
    // Copy-on-write: the untouched head and tail come from the current content.
    const buffer = new Uint8Array(count * unitSize)
    map.beforeCopyOnWrite?.()
    if (headLength > 0) buffer.set(await readGuest(runStart, headLength), 0)
    if (runEnd < lastUnitEnd) buffer.set(await readGuest(runEnd, lastUnitEnd - runEnd), runEnd - runStart)
    buffer.set(piece, headLength)
    await map.writeData(hostOffset, buffer, runStart)
  }
  await map.linkRun(unit, count, hostOffset)
}

/** Whether the untouched guest bytes `[offset, offset+length)` of a unit read as zeros now. */
async function readsAsZero(plan: AllocatePlan, offset: number, length: number, readGuest: GuestReader): Promise<boolean> {
  if (length <= 0 || plan.reads === 'zeros') return true
  return plan.reads === 'below' && readGuest.readsAsZero !== undefined && await readGuest.readsAsZero(offset, length)
}

/**
 * New units with subunits (qcow2 extended L2), one at a time: old data that must move is
 * copied whole first; otherwise only partly written subunits are completed.
 */
async function allocateSubunits(allocator: UnitAllocator, map: UnitMap, unit: number, count: number, hostOffset: number, carry: boolean[], position: number, runEnd: number, bytes: (from: number, to: number) => Uint8Array, readGuest: GuestReader): Promise<void> {
  const unitSize = allocator.unitSize
  for (let i = 0; i < count; i++) {
    const unitStart = (unit + i) * unitSize
    const from = Math.max(position, unitStart)
    const to = Math.min(runEnd, unitStart + unitSize)
    const at = hostOffset + i * unitSize
    let filled = 0
    if (carry[i]) {
      await map.writeData(at, await readGuest(unitStart, Math.min(unitSize, allocator.virtualSize - unitStart)), unitStart)
      filled = ALL_SUBUNITS
    }
    await writeSubunits(allocator, map, unit + i, at, filled, from, bytes(from, to), readGuest)
  }
}

/**
 * Writes `data` at guest `position` into the unit at `hostOffset`, completing partly written
 * subunits that hold nothing yet (`filled` clear) from the current content, then links the
 * touched subunits (qcow2: allocated, not zero).
 */
async function writeSubunits(allocator: UnitAllocator, map: UnitMap, unit: number, hostOffset: number, filled: number, position: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
  const subunitSize = allocator.subunitSize!
  const unitStart = unit * allocator.unitSize
  const first = Math.floor((position - unitStart) / subunitSize)
  const last = Math.floor((position + data.length - 1 - unitStart) / subunitSize)
  const spanStart = unitStart + first * subunitSize
  const spanEnd = Math.min(unitStart + (last + 1) * subunitSize, allocator.virtualSize)
  const needsFill = (index: number) => ((filled >>> index) & 1) === 0
  if ((position > spanStart && needsFill(first)) || (position + data.length < spanEnd && needsFill(last))) {
    const buffer = await readGuest(spanStart, spanEnd - spanStart)
    buffer.set(data, position - spanStart)
    await map.writeData(hostOffset + first * subunitSize, buffer, spanStart)
  } else {
    await map.writeData(hostOffset + (position - unitStart), data, position)
  }
  await map.linkRun(unit, 1, hostOffset, { first, last })
}
