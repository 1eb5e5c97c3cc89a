// The valid images the failure tests start from (each checked against qemu-img by
// bases.test.ts); corrupt variants are made by poking named fields of these.
import { buildQcow2, pattern, type BuiltImage, type ClusterSpec } from '../helpers/build-qcow2.js'

const KiB = 1024

/** 128 clusters (64 KiB at 512 bytes): data and zero clusters across two L2 tables at 512-byte clusters. */
export function plainImage(clusterBits = 9): BuiltImage {
  const cs = 2 ** clusterBits
  const clusters: Record<number, ClusterSpec> = {
    0: { kind: 'data', data: pattern(cs, 0x11) },
    1: { kind: 'data', data: pattern(cs, 0x22) },
    5: { kind: 'zero' },
    6: { kind: 'zero', preallocated: true },
    70: { kind: 'data', data: pattern(cs, 0x33) },
    127: { kind: 'data', data: pattern(cs, 0x44) },
  }
  return buildQcow2({ virtualSize: 128 * cs, clusterBits, clusters, featureTable: true })
}

/** Like the plain image with two internal snapshots (one sharing tables, one with its own). */
export function snapshotImage(): BuiltImage {
  const cs = 512
  return buildQcow2({
    virtualSize: 64 * KiB,
    clusters: {
      0: { kind: 'data', data: pattern(cs, 0x51) },
      3: { kind: 'compressed', data: pattern(cs, 0x52) },
      64: { kind: 'data', data: pattern(cs, 0x53) },
    },
    snapshots: [
      { name: 'shared' },
      { name: 'own', clusters: { 2: { kind: 'data', data: pattern(cs, 0x54) } } },
    ],
  })
}

/** Compressed clusters packed at byte offsets, some spanning host cluster boundaries. */
export function compressedImage(): BuiltImage {
  const cs = 512
  const clusters: Record<number, ClusterSpec> = {}
  for (let i = 0; i < 24; i++) clusters[i * 3] = { kind: 'compressed', data: pattern(cs, 0x60 + i) }
  clusters[1] = { kind: 'data', data: pattern(cs, 0x7f) }
  return buildQcow2({ virtualSize: 48 * KiB, clusters })
}

/** Extended L2 entries (16 KiB clusters): full, partial and zero subclusters. */
export function extendedL2Image(): BuiltImage {
  const cs = 16 * KiB
  return buildQcow2({
    virtualSize: 256 * KiB,
    clusterBits: 14,
    extendedL2: true,
    clusters: {
      0: { kind: 'data', data: pattern(cs, 0x81) },
      1: { kind: 'subclusters', data: pattern(cs, 0x82), allocated: 0x0000_ff0f, zero: 0x00f0_0000 },
      2: { kind: 'zero' },
      3: { kind: 'zero', preallocated: true },
      5: { kind: 'compressed', data: pattern(cs, 0x83) },
      15: { kind: 'subclusters', data: pattern(cs, 0x84), allocated: 0x8000_0001, zero: 0x4000_0000 },
    },
  })
}

/** A backing file name and format, persistent bitmaps and a (short) feature table. */
export function backingBitmapsImage(backingFile = 'base.qcow2'): BuiltImage {
  const cs = 512
  return buildQcow2({
    virtualSize: 64 * KiB,
    backingFile,
    backingFormat: 'qcow2',
    clusters: { 2: { kind: 'data', data: pattern(cs, 0x91) }, 9: { kind: 'zero' } },
    bitmaps: [{ name: 'dirty' }, { name: 'fine', granularityBits: 9, flags: 0 }],
    featureTable: [{ type: 2, bit: 0, name: 'bitmaps' }],
  })
}

/** An image whose guest data lives in an external data file. */
export function dataFileImage(dataFile = 'disk.raw'): BuiltImage {
  const cs = 512
  return buildQcow2({
    virtualSize: 16 * KiB,
    dataFile,
    clusters: { 0: { kind: 'data', data: pattern(cs, 0xa1) }, 7: { kind: 'data', data: pattern(cs, 0xa2) } },
  })
}

/** A v2 image (72-byte header, no extensions) with a snapshot and a compressed cluster. */
export function version2Image(): BuiltImage {
  const cs = 512
  return buildQcow2({
    virtualSize: 32 * KiB,
    version: 2,
    clusters: { 0: { kind: 'data', data: pattern(cs, 0xb1) }, 4: { kind: 'compressed', data: pattern(cs, 0xb2) } },
    snapshots: [{ name: 'old' }],
  })
}

/** Every base, by name. */
export const BASES: Record<string, () => BuiltImage> = {
  plain: plainImage,
  snapshot: snapshotImage,
  compressed: compressedImage,
  'extended-l2': extendedL2Image,
  'backing-bitmaps': () => backingBitmapsImage(),
  'data-file': () => dataFileImage(),
  v2: version2Image,
}
