// What opening a QCOW2 image takes, and its first steps: header, snapshots, L1 table, data file.
import type { Codecs, Compressors } from '../codecs.js'
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import type { EncryptionOptions } from './crypto/encryption.js'
import { TableCache } from './cache.js'
import { checkQcow2 } from './check.js'
import type { LookupContext } from './lookup.js'
import { loadL1Table, loadLayout, type Qcow2Layout } from './open.js'
import { findSnapshot, loadSnapshotTable, type Snapshot } from './snapshot.js'
import * as spec from './spec.js'
import { isWritable } from '../io/storage.js'

/** Options for {@link Qcow2Image.open}. */
export interface Qcow2OpenOptions extends EncryptionOptions {
  codecs?: Codecs | undefined
  /** Read the disk as it was at this snapshot (ID or name, or both). */
  snapshot?: string | { id?: string; name?: string } | undefined
  /** Bytes of L2 tables to cache (default 32 MiB, covering 256 GiB at 64 KiB clusters). */
  l2CacheSize?: number | undefined
  /** Opens the external data file the image names; required when it has one. */
  openDataFile?: ((name: string) => Promise<ReadableStorage>) | undefined
  /** Open without the external data file (for info): reading guest data then fails. */
  skipDataFile?: boolean | undefined
  /** Open for writing (the storage, and any data file, must be writable). */
  writable?: boolean | undefined
  /** Compressors for compressed writes (Node: zlib and zstd). */
  compressors?: Compressors | undefined
  /** Where the repair of a dirty image opened for writing reports, line by line (QEMU: stderr). */
  report?: ((line: string) => void) | undefined
}

const DEFAULT_L2_CACHE_BYTES = 32 * 1024 * 1024

/** Stands in for an external data file that was not opened: any read says so. */
function unavailable(image: string, dataFile: string): ReadableStorage {
  const fail = async (): Promise<never> => {
    throw new ImageError('DENIED', `${image}: external data file '${dataFile}' was not opened`, { file: image })
  }
  return { name: dataFile, size: fail, read: fail, close: async () => undefined }
}

/**
 * The first steps of opening: the header (a dirty lazy-refcount image repaired first when opened
 * for writing, as qcow2_do_open does), the snapshot table, the L1 table read (the active one or
 * a snapshot's) and the external data file.
 */
export async function openQcow2Context(storage: ReadableStorage, options: Qcow2OpenOptions): Promise<{ layout: Qcow2Layout; snapshots: Snapshot[]; ctx: LookupContext }> {
    let layout = await loadLayout(storage)
    if (options.writable && (layout.header.incompatibleFeatures & spec.INCOMPAT_DIRTY) && !(layout.header.incompatibleFeatures & spec.INCOMPAT_CORRUPT) && isWritable(storage)) {
      // A lazy-refcount image left dirty: refcounts repaired before writing, with the check's
      // messages, as qcow2_do_open does when not opened for qemu-img check (BDRV_O_CHECK).
      const result = await checkQcow2(storage, { fix: 'all', report: options.report })
      if (result.failed || result.checkErrors) throw new ImageError('CORRUPT', `${storage.name}: Could not repair dirty image: ${result.failed ?? `${result.checkErrors} check errors`}`, { file: storage.name })
      layout = await loadLayout(storage)
    }
    const { header, geometry } = layout
    const snapshots = await loadSnapshotTable(storage, header.snapshotsOffset, header.snapshotCount, header.version, geometry.clusterSize)
    let l1Offset = header.l1TableOffset
    let l1Size = header.l1Size
    const virtualSize = header.size
    let what = 'active L1 table'
    if (options.snapshot !== undefined) {
      const snap = findSnapshot(snapshots, options.snapshot)
      if (!snap) {
        const key = typeof options.snapshot === 'string' ? options.snapshot : JSON.stringify(options.snapshot)
        throw new ImageError('NO_SUCH_SNAPSHOT', `${storage.name}: no snapshot ${key} (the image has ${snapshots.length})`, { file: storage.name })
      }
      l1Offset = snap.l1TableOffset
      l1Size = snap.l1Size
      // The disk keeps its current size, as in QEMU's qcow2_snapshot_load_tmp (qemu-img convert -l,
      // qemu-nbd -l): only the L1 table is switched; entries past a shorter snapshot L1 read as
      // unallocated. (Only applying a snapshot resizes the disk to the snapshot's disk_size.)
      what = `L1 table of snapshot ${snap.id}`
      if (l1Size * 8 > spec.MAX_L1_BYTES) throw new ImageError('CORRUPT', `${storage.name}: ${what} of ${l1Size} entries exceeds ${spec.MAX_L1_BYTES} bytes`)
    }
    const l1 = await loadL1Table(storage, layout, l1Offset, l1Size, what)
    let dataStorage = storage
    if (layout.hasDataFile) {
      if (header.dataFile === undefined) throw new ImageError('INVALID_ARGUMENT', `${storage.name}: 'data-file' is required for this image (it names no external data file)`, { file: storage.name, offset: 72 })
      if (options.skipDataFile) dataStorage = unavailable(storage.name, header.dataFile)
      else if (!options.openDataFile) throw new ImageError('DENIED', `${storage.name}: the image names an external data file '${header.dataFile}' and opening it is not allowed`, { file: storage.name })
      else dataStorage = await options.openDataFile(header.dataFile)
    }
    const cacheBytes = options.l2CacheSize ?? DEFAULT_L2_CACHE_BYTES
    const ctx: LookupContext = {
      geometry, storage, dataStorage, hasDataFile: layout.hasDataFile, l1, l1TableOffset: l1Offset,
      l2Cache: new TableCache(Math.ceil(cacheBytes / geometry.clusterSize)),
      fileSize: layout.fileSize, virtualSize,
    }
  return { layout, snapshots, ctx }
}
