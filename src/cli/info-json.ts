// ImageInfo → QEMU 7.2 QAPI ImageInfo object (block-core.json), ready for toQemuJson.
import type { FormatSpecificInfo, ImageInfo, SnapshotInfo } from '../format/info.js'
import { findFormatModule } from '../formats.js'
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

/** The `data` member of `format-specific`: the JSON its format's module makes of it. */
export function formatSpecificToQValue(spec: FormatSpecificInfo): QValue {
  const toJson = findFormatModule(spec.type)?.formatSpecificToJson
  return toJson ? toJson(spec.data) : spec.data as QValue
}
