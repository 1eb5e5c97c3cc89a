// The facts `info` reports about one image, independent of output form (JSON or human).
// Field names follow qemu-img's JSON (block-core.json ImageInfo / ImageInfoSpecificQCow2).

/** One internal snapshot as `info` lists it (SnapshotInfo). */
export interface SnapshotInfo {
  id: string
  name: string
  vmStateSize: number
  dateSec: number
  dateNsec: number
  vmClockSec: number
  vmClockNsec: number
  /** Instruction count; undefined when the image does not record one. */
  icount: number | undefined
}

/** One persistent bitmap as `info` lists it (Qcow2BitmapInfo). */
export interface BitmapInfo {
  name: string
  granularity: number
  /** 'in-use' and/or 'auto'. */
  flags: string[]
}

/** Format-specific facts of a QCOW2 image (ImageInfoSpecificQCow2). */
export interface Qcow2SpecificInfo {
  type: 'qcow2'
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

/** One LUKS key slot as `info` lists it (QCryptoBlockInfoLUKSSlot). */
export interface LuksSlotInfo {
  active: boolean
  /** PBKDF2 iterations; active slots only. */
  iters: number | undefined
  /** AF stripes; active slots only. */
  stripes: number | undefined
  /** Byte offset of the key material in the LUKS area. */
  keyOffset: number
}

/** A LUKS header as `info` shows it (QCryptoBlockInfoLUKS, QEMU 7.2). */
export interface LuksInfo {
  cipherAlg: string
  cipherMode: string
  ivgenAlg: string
  /** ESSIV only. */
  ivgenHashAlg: string | undefined
  hashAlg: string
  /** Bytes (payload offset sector × 512). */
  payloadOffset: number
  masterKeyIters: number
  uuid: string
  slots: LuksSlotInfo[]
}

/** Everything `qemu-img info` reports about one image (BlockNodeInfo). */
export interface ImageInfo {
  filename: string
  format: string
  virtualSize: number
  /** Bytes allocated on the host, when known. */
  actualSize: number | undefined
  clusterSize: number | undefined
  encrypted: boolean | undefined
  dirtyFlag: boolean | undefined
  backingFilename: string | undefined
  fullBackingFilename: string | undefined
  backingFilenameFormat: string | undefined
  snapshots: SnapshotInfo[] | undefined
  formatSpecific: FormatSpecificInfo | undefined
}

/** Format-specific facts of a LUKS image (ImageInfoSpecific type 'luks'). */
export interface LuksSpecificInfo {
  type: 'luks'
  luks: LuksInfo
}

/** A JSON-like value of format-specific info, members in QAPI declaration order. */
export type InfoValue = null | boolean | number | string | InfoValue[] | InfoMembers

/** The members of a QAPI object; undefined members are omitted. */
export interface InfoMembers { [key: string]: InfoValue | undefined }

/**
 * Format-specific facts a format module gives already in QAPI form (`members` are the `data`
 * object of `format-specific`, with QAPI's names): formats whose facts nothing else reads.
 */
export interface QapiSpecificInfo {
  type: string
  members: InfoMembers
}

/** ImageInfoSpecific: one of the formats that has some. */
export type FormatSpecificInfo = Qcow2SpecificInfo | LuksSpecificInfo | QapiSpecificInfo

