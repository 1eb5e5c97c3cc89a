// ImageInfo → QEMU 7.2 QAPI ImageInfo object (block-core.json), ready for toQemuJson.
import type { FormatSpecificInfo, ImageInfo, LuksInfo, Qcow2SpecificInfo, SnapshotInfo } from '../format/info.js'
import type { QValue } from './qjson.js'

// Members are inserted in QAPI declaration order (base fields first), which together with the
// QDict hash decides the printed order.

/** One snapshot as QAPI SnapshotInfo; `icount` only when the image records one. */
export function snapshotToQValue(snapshot: SnapshotInfo): QValue {
  return {
    id: snapshot.id,
    name: snapshot.name,
    'vm-state-size': snapshot.vmStateSize,
    'date-sec': snapshot.dateSec,
    'date-nsec': snapshot.dateNsec,
    'vm-clock-sec': snapshot.vmClockSec,
    'vm-clock-nsec': snapshot.vmClockNsec,
    icount: snapshot.icount,
  }
}

/**
 * The `data` member of qcow2 `format-specific` (ImageInfoSpecificQCow2). Undefined fields are
 * omitted; an empty bitmap list is omitted too, as QEMU cannot tell it from an absent one.
 */
export function qcow2SpecificToQValue(spec: Qcow2SpecificInfo): QValue {
  const bitmaps = spec.bitmaps !== undefined && spec.bitmaps.length > 0 ? spec.bitmaps : undefined
  return {
    compat: spec.compat,
    'data-file': spec.dataFile,
    'data-file-raw': spec.dataFileRaw,
    'extended-l2': spec.extendedL2,
    'lazy-refcounts': spec.lazyRefcounts,
    corrupt: spec.corrupt,
    'refcount-bits': spec.refcountBits,
    encrypt: spec.encryptFormat === undefined ? undefined : { format: spec.encryptFormat, ...(spec.luks ? luksToQValue(spec.luks) : {}) },
    bitmaps: bitmaps?.map((bitmap) => ({
      name: bitmap.name,
      granularity: bitmap.granularity,
      flags: [...bitmap.flags],
    })),
    'compression-type': spec.compressionType,
  }
}

/** The LUKS members of qcow2 `encrypt` (QCryptoBlockInfoLUKS, QEMU 7.2: no detached-header). */
export function luksToQValue(luks: LuksInfo): { [key: string]: QValue | undefined } {
  return {
    'cipher-alg': luks.cipherAlg,
    'cipher-mode': luks.cipherMode,
    'ivgen-alg': luks.ivgenAlg,
    'ivgen-hash-alg': luks.ivgenHashAlg,
    'hash-alg': luks.hashAlg,
    'payload-offset': luks.payloadOffset,
    'master-key-iters': luks.masterKeyIters,
    uuid: luks.uuid,
    slots: luks.slots.map((slot) => ({
      active: slot.active,
      iters: slot.iters,
      stripes: slot.stripes,
      'key-offset': slot.keyOffset,
    })),
  }
}

/**
 * `info` as qemu-img 7.2 prints it with --output=json (QAPI ImageInfo). `encrypted` appears only
 * when true, `snapshots` only when non-empty; other undefined fields are omitted.
 */
export function infoToQValue(info: ImageInfo): QValue {
  const snapshots = info.snapshots !== undefined && info.snapshots.length > 0 ? info.snapshots : undefined
  const spec = info.formatSpecific
  return {
    filename: info.filename,
    format: info.format,
    'dirty-flag': info.dirtyFlag,
    'actual-size': info.actualSize,
    'virtual-size': info.virtualSize,
    'cluster-size': info.clusterSize,
    encrypted: info.encrypted === true ? true : undefined,
    'backing-filename': info.backingFilename,
    'full-backing-filename': info.fullBackingFilename,
    'backing-filename-format': info.backingFilenameFormat,
    snapshots: snapshots?.map(snapshotToQValue),
    'format-specific': spec === undefined ? undefined : { type: spec.type, data: formatSpecificToQValue(spec) },
  }
}

/** The `data` member of `format-specific` for any format. */
export function formatSpecificToQValue(spec: FormatSpecificInfo): QValue {
  switch (spec.type) {
    case 'qcow2': return qcow2SpecificToQValue(spec.data)
    case 'luks': return luksToQValue(spec.data) as QValue
    case 'vmdk': return spec.data as QValue
  }
}
