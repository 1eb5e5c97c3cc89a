// The facts `info` reports about one image, independent of output form (JSON or human).
// Field names follow qemu-img's JSON (block-core.json ImageInfo).
import type { FormatDriver } from './driver.js'

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

/**
 * ImageInfoSpecific (block-core.json): `type` names the variant, `data` holds its facts, typed
 * by the format that gives them (qcow2's Qcow2SpecificInfo, luks' LuksInfo, vmdk's already in
 * QAPI form). The module named `type` turns `data` into qemu-img's JSON
 * (FormatModule.formatSpecificToJson); without one, `data` is that JSON. Of qimg's formats
 * qcow2, luks and vmdk have one (qemu-img 7.2 prints none for raw, vdi, qcow and vpc).
 */
export interface FormatSpecificInfo {
  type: string
  data: unknown
}

/**
 * The `info` facts of one layer from what every driver knows (file, format, sizes, backing
 * name), with `facts` — the format's own answers — over them. Not dirty, no snapshots and no
 * format-specific facts unless `facts` says otherwise.
 */
export async function layerInfo(driver: FormatDriver, facts: Partial<ImageInfo> = {}): Promise<ImageInfo> {
  return {
    filename: driver.storage.name,
    format: driver.format,
    virtualSize: driver.virtualSize,
    actualSize: await driver.storage.allocatedSize?.(),
    clusterSize: driver.clusterSize,
    encrypted: undefined,
    dirtyFlag: false,
    backingFilename: driver.backing?.name,
    fullBackingFilename: undefined,
    backingFilenameFormat: driver.backing?.format,
    snapshots: undefined,
    formatSpecific: undefined,
    ...facts,
  }
}

/** A JSON-like value of format-specific info, members in QAPI declaration order. */
export type InfoValue = null | boolean | number | string | InfoValue[] | InfoMembers

/** The members of a QAPI object; undefined members are omitted. */
export interface InfoMembers { [key: string]: InfoValue | undefined }
