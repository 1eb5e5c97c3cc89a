// qemu-img snapshot -c/-a/-d on an open, writable QCOW2 image (QEMU's qcow2_snapshot_create,
// _goto, _delete): the table operations of snapshot-ops.ts run under the writer, and the
// in-memory header follows the snapshot table.
import { ImageError } from '../errors.js'
import type { Qcow2Image } from './image.js'
import { findSnapshot, type Snapshot } from './snapshot.js'
import { applySnapshot, createSnapshot, deleteSnapshot, type SnapshotTarget } from './snapshot-ops.js'

function snapshotTarget(image: Qcow2Image): SnapshotTarget {
  return { snapshots: image.snapshots, snapshotsOffset: image.layout.header.snapshotsOffset, virtualSize: image.virtualSize }
}

function checkSnapshotsAllowed(image: Qcow2Image): void {
  if (image.layout.hasDataFile) throw new ImageError('UNSUPPORTED', 'Operation not supported (images with an external data file cannot have internal snapshots)')
}

/** The header's snapshot fields after the table moved. */
function followTable(image: Qcow2Image, target: SnapshotTarget): void {
  image.layout.header.snapshotsOffset = target.snapshotsOffset
  image.layout.header.snapshotCount = image.snapshots.length
}

/** Creates an internal snapshot of the current state, dated `now` (ms since the epoch). */
export async function createImageSnapshot(image: Qcow2Image, name: string, now: number): Promise<Snapshot> {
  checkSnapshotsAllowed(image)
  const target = snapshotTarget(image)
  const snapshot = await image.writer.withTables((a) => createSnapshot(a, target, name, { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1e6 }))
  followTable(image, target)
  return snapshot
}

/** Reverts the disk to snapshot `key` (ID or name). */
export async function applyImageSnapshot(image: Qcow2Image, key: string): Promise<void> {
  checkSnapshotsAllowed(image)
  const snapshot = findSnapshot(image.snapshots, key)
  if (snapshot && snapshot.l1Size > image.layout.header.l1Size) await image.writer.growL1(snapshot.l1Size)
  // The disk takes the snapshot's size first (QEMU's qcow2_snapshot_goto truncates); the
  // snapshot's L1 table then replaces everything, so nothing else of a shrink is needed.
  if (snapshot?.diskSize !== undefined && snapshot.diskSize !== image.virtualSize) {
    if (image.layout.header.version < 3) throw new ImageError('UNSUPPORTED', "Can't resize a v2 image which has snapshots")
    await image.writer.flush()
    await image.setVirtualSize(snapshot.diskSize)
  }
  const target = snapshotTarget(image)
  await image.writer.withTables((a) => applySnapshot(a, target, key))
}

/** Deletes snapshot `key` (ID or name). */
export async function deleteImageSnapshot(image: Qcow2Image, key: string): Promise<void> {
  const target = snapshotTarget(image)
  await image.writer.withTables((a) => deleteSnapshot(a, target, key))
  followTable(image, target)
}
