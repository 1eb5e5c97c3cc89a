// ImageInfo fixtures for the output tests (human and JSON `info`): what qemu-img 7.2 reports
// for a fresh 1 MiB qcow2 v3 image, to be varied per test.
import type { ImageInfo } from '../../src/format/info.js'
import type { Qcow2SpecificInfo } from '../../src/qcow2/info-json.js'

/** The format-specific data of a fresh v3 image. */
export const V3: Qcow2SpecificInfo = {
  compat: '1.1', compressionType: 'zlib', lazyRefcounts: false, refcountBits: 16,
  corrupt: false, extendedL2: false, dataFile: undefined, dataFileRaw: undefined, bitmaps: undefined,
  encryptFormat: undefined,
}

/** A qcow2 ImageInfo like qemu-img reports for a fresh 1 MiB v3 image, with `overrides`. */
export function qcow2(overrides: Partial<ImageInfo>, spec: Partial<Qcow2SpecificInfo> = {}): ImageInfo {
  return {
    filename: 'x.qcow2', format: 'qcow2', virtualSize: 1048576, actualSize: 200704, clusterSize: 65536,
    encrypted: undefined, dirtyFlag: false, backingFilename: undefined, fullBackingFilename: undefined,
    backingFilenameFormat: undefined, snapshots: undefined, formatSpecific: { type: 'qcow2', data: { ...V3, ...spec } }, ...overrides,
  }
}
