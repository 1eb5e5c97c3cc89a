// qcow2's `format-specific` facts in `info` (ImageInfoSpecificQCow2, block-core.json): their
// type, and their QAPI members for qemu-img's JSON, in declaration order.
import type { InfoMembers, LuksInfo } from '../format/info.js'
import { luksToJson } from '../crypto/luks-info-json.js'

/** One persistent bitmap as `info` lists it (Qcow2BitmapInfo). */
export interface BitmapInfo {
  name: string
  granularity: number
  /** 'in-use' and/or 'auto'. */
  flags: string[]
}

/** Format-specific facts of a QCOW2 image (ImageInfoSpecificQCow2, the `data` of type 'qcow2'). */
export interface Qcow2SpecificInfo {
  compat: '0.10' | '1.1'
  compressionType: 'zlib' | 'zstd'
  lazyRefcounts: boolean | undefined // v3 only
  refcountBits: number
  corrupt: boolean | undefined // v3 only
  extendedL2: boolean | undefined // v3 only
  dataFile: string | undefined
  dataFileRaw: boolean | undefined
  bitmaps: BitmapInfo[] | undefined
  /** Encryption format when encrypted ('aes' or 'luks'). */
  encryptFormat: 'aes' | 'luks' | undefined
  /** The LUKS header's facts (encryptFormat 'luks'). */
  luks?: LuksInfo | undefined
}


/**
 * The `data` member of qcow2 `format-specific` (ImageInfoSpecificQCow2). Undefined fields are
 * omitted; an empty bitmap list is omitted too, as QEMU cannot tell it from an absent one.
 */
export function qcow2SpecificToJson(spec: Qcow2SpecificInfo): InfoMembers {
  const bitmaps = spec.bitmaps !== undefined && spec.bitmaps.length > 0 ? spec.bitmaps : undefined
  return {
    compat: spec.compat,
    'data-file': spec.dataFile,
    'data-file-raw': spec.dataFileRaw,
    'extended-l2': spec.extendedL2,
    'lazy-refcounts': spec.lazyRefcounts,
    corrupt: spec.corrupt,
    'refcount-bits': spec.refcountBits,
    encrypt: spec.encryptFormat === undefined ? undefined : { format: spec.encryptFormat, ...(spec.luks ? luksToJson(spec.luks) : {}) },
    bitmaps: bitmaps?.map((bitmap) => ({
      name: bitmap.name,
      granularity: bitmap.granularity,
      flags: [...bitmap.flags],
    })),
    'compression-type': spec.compressionType,
  }
}
