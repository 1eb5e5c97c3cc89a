// qcow2 as a unit allocator for the generic write path (format/unit-writer.ts): a unit is a
// cluster, a subunit an extended-L2 subcluster, a locked region one L2 table. Where a cluster
// can take a write follows QEMU's cluster_needs_new_alloc; links set L2 entries (and bitmaps)
// in the cache, which the ordered flush writes after the data.
import { ALL_SUBUNITS, type HostPiece, type UnitAllocator, type UnitMap, type UnitPlan } from '../../format/unit-writer.js'
import type { CachedTable } from '../cache.js'
import { l2Coverage, l2Index } from '../geometry.js'
import { readL2Entry } from '../lookup.js'
import type { Decoded } from '../writer-types.js'
import { allocateData } from './allocate.js'
import { writeData, zeroFresh } from './data-write.js'
import { locked } from './flush.js'
import { ownL2, rawCopied, release, setEntry, writableL2 } from './l2-update.js'
import type { WriterState } from './state.js'

/** How the cluster at L2 entry `index` takes a write. */
function classify(s: WriterState, table: CachedTable, index: number, decoded: Decoded): UnitPlan {
  const g = s.ctx.geometry
  const e = decoded.entry
  if (e.kind === 'normal' && e.copied) return { kind: 'inPlace', hostOffset: e.hostOffset, filled: decoded.allocated }
  // QEMU (cluster_needs_new_alloc): a zero cluster (no extended L2) that kept its own allocation
  // (ZERO_ALLOC with COPIED) is written where it is; the rest of it reads as zeros, so zeros
  // fill it (the COW of keep_old).
  if (!g.extendedL2 && e.kind === 'zero' && e.hostOffset !== undefined && !s.ctx.hasDataFile && rawCopied(s, table, index)) {
    return { kind: 'rewrite', hostOffset: e.hostOffset, fill: 'zeros', link: true }
  }
  // Extended L2: old data must move whole into the new cluster (the subclusters not written
  // keep their content).
  if (e.kind === 'normal' || e.kind === 'compressed') return { kind: 'allocate', carry: g.extendedL2 }
  // What the cluster reads as now (QEMU's is_zero_cow asks block status for the same).
  return { kind: 'allocate', carry: false, reads: e.kind === 'zero' || !s.hasBacking ? 'zeros' : 'below' }
}

/** The generic path's view of one writable L2 table. */
export function tableUnits(s: WriterState, table: CachedTable): UnitMap {
  const g = s.ctx.geometry
  const cs = g.clusterSize
  return {
    plan: async (unit) => {
      const index = l2Index(g, unit * cs)
      return classify(s, table, index, readL2Entry(s.ctx, table, index))
    },
    allocateRun: (unit, count, contiguity) => allocateData(s, unit, count, contiguity),
    writeData: (hostOffset, bytes, guestOffset) => writeData(s, hostOffset, bytes, guestOffset),
    zeroFresh: (hostOffset, length) => zeroFresh(s, hostOffset, length),
    linkRun: async (unit, count, hostOffset, subunits) => {
      for (let i = 0; i < count; i++) {
        const index = l2Index(g, (unit + i) * cs)
        const at = hostOffset + i * cs
        const old = readL2Entry(s.ctx, table, index)
        const kept = classify(s, table, index, old).kind !== 'allocate'
        if (g.extendedL2 && subunits) {
          // Untouched subclusters keep reading as before: zero bits stay, others read from backing.
          let { allocated, zero } = kept ? old : old.entry.kind === 'normal' || old.entry.kind === 'compressed' ? { allocated: ALL_SUBUNITS, zero: 0 } : { allocated: 0, zero: old.zero }
          for (let b = subunits.first; b <= subunits.last; b++) {
            allocated = (allocated | (1 << b)) >>> 0
            zero = (zero & ~(1 << b)) >>> 0
          }
          setEntry(s, table, index, { kind: 'normal', hostOffset: at, copied: true }, { allocated, zero })
        } else {
          setEntry(s, table, index, { kind: 'normal', hostOffset: at, copied: true })
        }
        if (!kept) release(s, old)
      }
    },
    beforeCopyOnWrite: () => s.storage.debugEvent?.('cow_read'),
    beforeFreshWrite: () => s.storage.debugEvent?.('cluster_alloc_space'),
  }
}

/**
 * Host pieces for a range whose clusters are all ours alone (normal, COPIED), else undefined.
 * Then the bytes go straight to their place and no table changes.
 */
async function plainPieces(s: WriterState, offset: number, length: number): Promise<HostPiece[] | undefined> {
  const g = s.ctx.geometry
  const cs = g.clusterSize
  const pieces: HostPiece[] = []
  for (let position = offset; position < offset + length;) {
    const table = await ownL2(s, position)
    if (!table) return undefined
    const { entry } = readL2Entry(s.ctx, table, l2Index(g, position))
    if (entry.kind !== 'normal' || !entry.copied) return undefined
    const end = Math.min(offset + length, (Math.floor(position / cs) + 1) * cs)
    const hostOffset = entry.hostOffset + (position % cs)
    const last = pieces[pieces.length - 1]
    if (last && last.hostOffset + (last.to - last.from) === hostOffset) last.to = end - offset
    else pieces.push({ hostOffset, from: position - offset, to: end - offset })
    position = end
  }
  s.writesSinceFlush = true
  return pieces
}

/** qcow2 for the generic write path. */
export function qcow2Units(s: WriterState): UnitAllocator {
  const g = s.ctx.geometry
  return {
    unitSize: g.clusterSize,
    subunitSize: g.extendedL2 ? g.subclusterSize : undefined,
    get virtualSize() { return s.ctx.virtualSize },
    name: s.storage.name,
    regionSize: l2Coverage(g),
    exclusive: (start, _end, work) => locked(s, async () => work(tableUnits(s, await writableL2(s, start)))),
    overwrite: {
      // Without the metadata lock, so concurrent overwrites proceed in parallel. In flight from
      // the lookup on: a free cannot complete between our lookup and our write, so a cluster
      // freed meanwhile is never reused under them. Not with extended L2 (bitmaps change).
      run: (work) => (g.extendedL2 || !s.started ? Promise.resolve(false) : s.inFlight.run(work)),
      map: (offset, length) => plainPieces(s, offset, length),
      writeData: (hostOffset, bytes, guestOffset) => writeData(s, hostOffset, bytes, guestOffset),
    },
  }
}
