// Internal snapshots on write ("Snapshot table"; QEMU's qcow2-snapshot.c): create copies the
// active L1 and adds a reference to everything it reaches; apply makes a snapshot's L1 the
// active one; delete drops its references. COPIED flags are recomputed after each change, and
// the snapshot table is always rewritten elsewhere before the header switches to it.
import { validateL1Size } from './open.js'
import { setU64 } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { writeHeaderPointer } from './header-encode.js'
import { compressedClusters } from './compressed.js'
import { decodeL1Entry } from './entries.js'
import { loadL2, readL2Entry } from './lookup.js'
import { SNAPSHOT_HEADER, findSnapshot, type Snapshot } from './snapshot.js'
import { MAX_SNAPSHOTS, SNAPSHOT_HEADER_LENGTH } from './spec.js'
import type { TableAccess } from './writer.js'

const encoder = new TextEncoder()

/** Encodes the whole snapshot table (entries padded to 8 bytes). */
export function encodeSnapshotTable(snapshots: readonly Snapshot[]): Uint8Array {
  const parts = snapshots.map((s) => {
    const id = encoder.encode(s.id)
    const name = encoder.encode(s.name)
    const length = Math.ceil((SNAPSHOT_HEADER_LENGTH + s.extraData.length + id.length + name.length) / 8) * 8
    const bytes = new Uint8Array(length)
    const view = new DataView(bytes.buffer)
    SNAPSHOT_HEADER.encode(view, {
      l1TableOffset: s.l1TableOffset, l1Size: s.l1Size, idSize: id.length, nameSize: name.length,
      dateSec: s.dateSec, dateNsec: s.dateNsec, vmClockNsec: s.vmClockNsec,
      vmStateSize: s.vmStateSize >= 2 ** 32 ? 0 : s.vmStateSize, extraDataSize: s.extraData.length,
    })
    bytes.set(s.extraData, SNAPSHOT_HEADER_LENGTH)
    bytes.set(id, SNAPSHOT_HEADER_LENGTH + s.extraData.length)
    bytes.set(name, SNAPSHOT_HEADER_LENGTH + s.extraData.length + id.length)
    return bytes
  })
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/**
 * QEMU's qcow2_update_snapshot_refcount: adds `addend` to the refcount of every L2 table and
 * cluster the L1 table reaches (0 only recomputes COPIED), and sets COPIED where the refcount
 * is now exactly 1. Returns whether the L1 entries changed.
 */
export async function updateTreeRefcounts(a: TableAccess, l1: DataView, addend: -1 | 0 | 1): Promise<boolean> {
  const { ctx, refcounts } = a
  const g = ctx.geometry
  const cs = g.clusterSize
  let l1Changed = false
  for (let i = 0; i < l1.byteLength / 8; i++) {
    const entry = decodeL1Entry(l1.getUint32(i * 8), l1.getUint32(i * 8 + 4), cs, () => `${a.storage.name}: L1 entry ${i}`)
    if (entry.kind === 'unallocated') continue
    const table = await loadL2(ctx, entry.hostOffset, `L1 entry ${i}`)
    const view = table.view
    let tableChanged = false
    const inline = !ctx.hasDataFile // with a data file, offset 0 can be a real cluster
    for (let j = 0; j < g.l2Entries; j++) {
      const at = j * g.l2EntrySize
      const hi = view.getUint32(at)
      const lo = view.getUint32(at + 4)
      // The common entry, decoded inline: unallocated or a plain, aligned data cluster.
      let host = inline && (hi & 0x7f00_0000) === 0 && (lo & 0x1ff) === 0 ? (hi & 0x00ff_ffff) * 0x1_0000_0000 + lo : -1
      if (host === 0) continue
      if (host < 0 || host % cs !== 0) {
        const { entry: e } = readL2Entry(ctx, table, j)
        if (e.kind === 'compressed') {
          if (addend === 0) continue
          const { firstCluster, lastCluster } = compressedClusters(e, cs)
          for (let c = firstCluster; c <= lastCluster; c++) await refcounts.add(c, addend)
          continue
        }
        const found = e.kind === 'normal' ? e.hostOffset : e.kind === 'zero' ? e.hostOffset : undefined
        if (found === undefined) continue
        host = found
      }
      let refcount = 1
      if (!ctx.hasDataFile) refcount = refcounts.addCached(host / cs, addend) ?? (addend === 0 ? await refcounts.get(host / cs) : await refcounts.add(host / cs, addend))
      const next = refcount === 1 ? (hi | 0x8000_0000) >>> 0 : (hi & 0x7fff_ffff) >>> 0
      if (next !== hi) {
        view.setUint32(at, next)
        if (!tableChanged) ctx.l2Cache.markDirty(table) // dirty tables stay cached
        tableChanged = true
      }
    }
    const refcount = addend === 0 ? await refcounts.get(entry.hostOffset / cs) : await refcounts.add(entry.hostOffset / cs, addend)
    if (refcount === 0) ctx.l2Cache.forget(entry.hostOffset)
    // Refcounts only rise before the snapshot table names the new L1, and only fall after it no
    // longer names the old one: writing back midway leaves leaks at worst, never corruption.
    await a.writeBackIfFull()
    const hi = l1.getUint32(i * 8)
    const next = refcount === 1 ? (hi | 0x8000_0000) >>> 0 : (hi & 0x7fff_ffff) >>> 0
    if (next !== hi) {
      l1.setUint32(i * 8, next)
      l1Changed = true
    }
  }
  return l1Changed
}

/** Header fields of the snapshot table: count and offset (bytes 60-71), one synced write. */
async function switchTable(a: TableAccess, snapshots: readonly Snapshot[], oldOffset: number, oldSize: number): Promise<number> {
  const cs = a.ctx.geometry.clusterSize
  const bytes = encodeSnapshotTable(snapshots)
  let offset = 0
  if (bytes.length > 0) {
    offset = await a.refcounts.allocate(Math.ceil(bytes.length / cs))
    await a.storage.write(offset, bytes)
  }
  await a.flush()
  await writeHeaderPointer(a.storage, { field: 'snapshots', count: snapshots.length, offset })
  if (oldOffset !== 0 && oldSize > 0) a.refcounts.free(oldOffset, Math.ceil(oldSize / cs))
  return offset
}

/** Bytes the current table takes (QEMU's snapshots_size: no padding after the last entry). */
export function snapshotTableSize(snapshots: readonly Snapshot[]): number {
  let size = 0
  for (const s of snapshots) size = Math.ceil(size / 8) * 8 + SNAPSHOT_HEADER_LENGTH + s.extraData.length + encoder.encode(s.id).length + encoder.encode(s.name).length
  return size
}

/** State of the image the operations read and update. */
export interface SnapshotTarget {
  snapshots: Snapshot[]
  snapshotsOffset: number
  virtualSize: number
}

/** Creates a snapshot of the active state; returns it. IDs are (largest numeric ID) + 1. */
export async function createSnapshot(a: TableAccess, target: SnapshotTarget, name: string, now: { sec: number; nsec: number }): Promise<Snapshot> {
  if (target.snapshots.length >= MAX_SNAPSHOTS) throw new ImageError('UNSUPPORTED', `${a.storage.name}: too many snapshots (at most ${MAX_SNAPSHOTS})`)
  const cs = a.ctx.geometry.clusterSize
  const id = String(target.snapshots.reduce((max, s) => Math.max(max, /^\d+$/.test(s.id) ? Number(s.id) : 0), 0) + 1)
  const active = a.ctx.l1
  const l1Size = active.byteLength / 8
  let l1Offset = 0
  if (l1Size > 0) {
    l1Offset = await a.refcounts.allocate(Math.ceil((l1Size * 8) / cs))
    await a.storage.write(l1Offset, new Uint8Array(active.buffer.slice(active.byteOffset, active.byteOffset + active.byteLength)))
  }
  if (await updateTreeRefcounts(a, active, 1)) a.markL1Dirty()
  await a.flush()
  const extraData = new Uint8Array(24)
  setU64(new DataView(extraData.buffer), 8, target.virtualSize) // vm_state_size_large 0, disk_size, icount 0
  const snapshot: Snapshot = {
    l1TableOffset: l1Offset, l1Size, id, name, dateSec: now.sec, dateNsec: now.nsec, vmClockNsec: 0,
    vmStateSize: 0, diskSize: target.virtualSize, icount: 0, extraData,
  }
  const next = [...target.snapshots, snapshot]
  target.snapshotsOffset = await switchTable(a, next, target.snapshotsOffset, snapshotTableSize(target.snapshots))
  target.snapshots.push(snapshot)
  return snapshot
}

/** A snapshot's L1 table; its size is checked first (past the file's end, the read fails). */
export async function readSnapshotL1(a: TableAccess, snapshot: Snapshot): Promise<DataView> {
  validateL1Size(a.storage.name, snapshot.l1TableOffset, snapshot.l1Size, `L1 table of snapshot ${snapshot.id}`)
  if (snapshot.l1Size === 0) return new DataView(new ArrayBuffer(0))
  const bytes = await a.storage.read(snapshot.l1TableOffset, snapshot.l1Size * 8)
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Makes snapshot `key` (ID or name) the active state. The active L1 must be large enough. */
export async function applySnapshot(a: TableAccess, target: SnapshotTarget, key: string): Promise<void> {
  const snapshot = findSnapshot(target.snapshots, key)
  if (!snapshot) throw new ImageError('NO_SUCH_SNAPSHOT', 'Failed to load snapshot: No such file or directory')
  if ((snapshot.diskSize ?? target.virtualSize) !== target.virtualSize) throw new ImageError('UNSUPPORTED', 'qcow2: Loading snapshots with different disk size is not supported')
  const snapL1 = await readSnapshotL1(a, snapshot)
  if (await updateTreeRefcounts(a, snapL1, 1)) {
    await a.storage.write(snapshot.l1TableOffset, new Uint8Array(snapL1.buffer, snapL1.byteOffset, snapL1.byteLength))
  }
  await a.flush()
  const active = a.ctx.l1
  const old = new DataView(active.buffer.slice(active.byteOffset, active.byteOffset + active.byteLength))
  const bytes = new Uint8Array(active.buffer, active.byteOffset, active.byteLength)
  bytes.fill(0)
  bytes.set(new Uint8Array(snapL1.buffer, snapL1.byteOffset, Math.min(snapL1.byteLength, active.byteLength)))
  await a.storage.write(a.l1Offset, bytes)
  await a.storage.flush()
  await updateTreeRefcounts(a, old, -1)
  await updateTreeRefcounts(a, active, 0)
  a.markL1Dirty()
}

/** Deletes snapshot `key` (ID or name): table first, then its references, then its L1. */
export async function deleteSnapshot(a: TableAccess, target: SnapshotTarget, key: string): Promise<void> {
  const snapshot = findSnapshot(target.snapshots, key)
  if (!snapshot) throw new ImageError('NO_SUCH_SNAPSHOT', 'snapshot not found')
  const cs = a.ctx.geometry.clusterSize
  const next = target.snapshots.filter((s) => s !== snapshot)
  target.snapshotsOffset = await switchTable(a, next, target.snapshotsOffset, snapshotTableSize(target.snapshots))
  target.snapshots.splice(target.snapshots.indexOf(snapshot), 1)
  const snapL1 = await readSnapshotL1(a, snapshot)
  await updateTreeRefcounts(a, snapL1, -1)
  if (snapshot.l1Size > 0) {
    const first = snapshot.l1TableOffset / cs
    for (let c = 0; c < Math.ceil((snapshot.l1Size * 8) / cs); c++) await a.refcounts.add(first + c, -1)
  }
  if (await updateTreeRefcounts(a, a.ctx.l1, 0)) a.markL1Dirty()
}
