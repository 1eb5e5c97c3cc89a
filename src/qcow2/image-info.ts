// What `info` reports about one QCOW2 layer: header facts, snapshots and qemu-img's
// format-specific fields (ImageInfoSpecificQCow2).
import type { ImageInfo } from '../format/info.js'
import type { ReadableStorage } from '../io/storage.js'
import { loadBitmapInfo } from './bitmaps.js'
import type { Qcow2Layout } from './open.js'
import type { Snapshot } from './snapshot.js'
import * as spec from './spec.js'
import type { encryptionInfo } from './crypto/encryption.js'

/** The facts `info` prints for a QCOW2 layer; `luks` is the LUKS header's description, if any. */
export async function describeQcow2(storage: ReadableStorage, layout: Qcow2Layout, snapshots: readonly Snapshot[], encrypted: boolean, luks: ReturnType<typeof encryptionInfo>): Promise<ImageInfo> {
  const h = layout.header
  const v3 = h.version >= 3
  const feature = (bits: bigint, bit: bigint) => (bits & bit) !== 0n
  return {
    filename: storage.name,
    format: 'qcow2',
    virtualSize: h.size,
    actualSize: await storage.allocatedSize?.(),
    clusterSize: layout.geometry.clusterSize,
    encrypted: encrypted ? true : undefined,
    dirtyFlag: feature(h.incompatibleFeatures, spec.INCOMPAT_DIRTY),
    backingFilename: h.backingFile,
    fullBackingFilename: undefined,
    backingFilenameFormat: h.backingFormat,
    snapshots: snapshots.length === 0 ? undefined : snapshots.map((s) => ({
      id: s.id, name: s.name, vmStateSize: s.vmStateSize, dateSec: s.dateSec, dateNsec: s.dateNsec,
      vmClockSec: Math.floor(s.vmClockNsec / 1e9), vmClockNsec: s.vmClockNsec % 1e9, icount: s.icount,
    })),
    formatSpecific: { type: 'qcow2', data: {
      compat: v3 ? '1.1' : '0.10',
      compressionType: h.compressionType === spec.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
      lazyRefcounts: v3 ? feature(h.compatibleFeatures, spec.COMPAT_LAZY_REFCOUNTS) : undefined,
      refcountBits: 2 ** h.refcountOrder,
      corrupt: v3 ? feature(h.incompatibleFeatures, spec.INCOMPAT_CORRUPT) : undefined,
      extendedL2: v3 ? feature(h.incompatibleFeatures, spec.INCOMPAT_EXTL2) : undefined,
      dataFile: h.dataFile,
      dataFileRaw: layout.hasDataFile ? feature(h.autoclearFeatures, spec.AUTOCLEAR_DATA_FILE_RAW) : undefined,
      bitmaps: v3 ? await loadBitmapInfo(storage, layout) : undefined,
      encryptFormat: h.cryptMethod === spec.CRYPT_AES ? 'aes' : h.cryptMethod === spec.CRYPT_LUKS ? 'luks' : undefined,
      luks: luks,
    } },
  }
}
