// `amend`: change what QCOW2 lets change after creation — compat (upgrade, and downgrade when
// nothing v3-only is in use), lazy_refcounts, refcount_bits (refcount structure rewritten),
// data_file, size — in QEMU's order: upgrade, refcount width, header, lazy refcounts, resize,
// downgrade.
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import { computeReferences } from '../qcow2/check.js'
import { decodeReftableEntry } from '../qcow2/entries.js'
import type { Qcow2Layout } from '../qcow2/open.js'
import { RefcountReader } from '../qcow2/refcount-read.js'
import { expandZeroClusters } from '../qcow2/expand-zero.js'
import { encodeHeaderCluster } from '../qcow2/header-encode.js'
import { writeRefcountStructure } from '../qcow2/refcount-rebuild.js'
import * as spec from '../qcow2/spec.js'
import { Qcow2Image } from '../qcow2/image.js'
import type { BlockDevice } from '../format/device.js'
import { resizeImage } from './resize.js'

/** What amend may change. */
export interface AmendOptions {
  compat?: '0.10' | '1.1' | undefined
  lazyRefcounts?: boolean | undefined
  refcountBits?: number | undefined
  dataFile?: string | undefined
  dataFileRaw?: boolean | undefined
  size?: number | undefined
}

/** Rewrites the refcount structure of a closed image with a new entry width. */
export async function changeRefcountWidth(storage: Storage, refcountBits: number): Promise<void> {
  const order = Math.log2(refcountBits)
  if (!Number.isInteger(order) || order < 0 || order > 6) throw new ImageError('INVALID_ARGUMENT', 'Refcount width must be a power of two and may not exceed 64 bits')
  const { refs: references, layout } = await computeReferences(storage)
  const refs = await storedRefcounts(storage, layout, references.length)
  const max = 2 ** refcountBits - 1
  const cs = layout.geometry.clusterSize
  for (let i = 0; i < refs.length; i++) {
    if (refs[i]! > max) throw new ImageError('INVALID_ARGUMENT', `Cannot decrease refcount entry width to ${refcountBits} bits: Cluster at offset 0x${(i * cs).toString(16)} has a refcount of ${refs[i]}`)
  }
  const { tableOffset, tableClusters } = await writeRefcountStructure(storage, refs, layout.fileSize, cs, order)
  const header = { ...layout.header, refcountOrder: order, refcountTableOffset: tableOffset, refcountTableClusters: tableClusters }
  const bytes = new Uint8Array(cs)
  bytes.set(encodeHeaderCluster(header))
  await storage.write(0, bytes)
  await storage.flush()
}

/**
 * The refcounts as stored, for `clusters` host clusters, with the clusters of the refcount
 * structure itself at 0: qcow2_change_refcount_order copies every refcount as it is (a wrong
 * one stays for check to find) and frees the old structure once the new one is in place.
 */
async function storedRefcounts(storage: Storage, layout: Qcow2Layout, clusters: number): Promise<Float64Array> {
  const reader = new RefcountReader(storage, layout)
  const refs = new Float64Array(clusters)
  for (let i = 0; i < clusters; i++) refs[i] = await reader.get(i)
  const cs = layout.geometry.clusterSize
  const { refcountTableOffset, refcountTableClusters } = layout.header
  const table = await storage.read(refcountTableOffset, refcountTableClusters * cs)
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength)
  const free = (offset: number): void => {
    if (offset / cs < clusters) refs[offset / cs] = 0
  }
  for (let i = 0; i < refcountTableClusters; i++) free(refcountTableOffset + i * cs)
  for (let i = 0; i < view.byteLength / 8; i++) {
    const block = decodeReftableEntry(view.getUint32(i * 8), view.getUint32(i * 8 + 4), cs, () => `${storage.name}: refcount table entry ${i}`)
    if (block !== 0) free(block)
  }
  return refs
}

/**
 * Amends the image at `open()`; `open` gives a writable device. Steps that need the image
 * closed (refcount width) run between openings.
 */
export async function amendImage(open: () => Promise<BlockDevice>, storageOf: () => Promise<Storage>, o: AmendOptions): Promise<void> {
  let device = await open()
  try {
    const driver = device.driver
    if (!(driver instanceof Qcow2Image)) throw new ImageError('UNSUPPORTED', `amend: format '${driver.format}' has no amendable options`)
    const h = driver.layout.header
    const targetV3 = o.compat === undefined ? h.version >= 3 : o.compat === '1.1'
    if (!targetV3 && o.lazyRefcounts) throw new ImageError('INVALID_ARGUMENT', 'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)')
    if (!targetV3 && o.refcountBits !== undefined && o.refcountBits !== 16) throw new ImageError('INVALID_ARGUMENT', 'Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)')
    if (o.dataFile !== undefined && !driver.layout.hasDataFile) throw new ImageError('INVALID_ARGUMENT', 'data-file can only be set for images that use an external data file')
    if (o.dataFileRaw === true && !(h.autoclearFeatures & spec.AUTOCLEAR_DATA_FILE_RAW)) throw new ImageError('INVALID_ARGUMENT', 'data-file-raw cannot be set on existing images')
    // 1. upgrade
    if (targetV3 && h.version < 3) {
      h.version = 3
      h.headerLength = spec.HEADER_V3_LENGTH
      h.refcountOrder = 4
      await driver.rewriteHeader()
    }
    // 2. refcount width (needs the image closed: its caches must not outlive the rewrite)
    if (o.refcountBits !== undefined && o.refcountBits !== 2 ** h.refcountOrder) {
      await device.close()
      const storage = await storageOf()
      try {
        await changeRefcountWidth(storage, o.refcountBits)
      } finally {
        await storage.close()
      }
      device = await open()
    }
    const image = device.driver as Qcow2Image
    const header = image.layout.header
    // 3. header fields
    let rewrite = false
    if (o.dataFile !== undefined) {
      header.dataFile = o.dataFile === '' ? undefined : o.dataFile
      rewrite = true
    }
    if (o.dataFileRaw === false && header.autoclearFeatures & spec.AUTOCLEAR_DATA_FILE_RAW) {
      header.autoclearFeatures &= ~spec.AUTOCLEAR_DATA_FILE_RAW
      rewrite = true
    }
    // 4. lazy refcounts
    if (o.lazyRefcounts !== undefined) {
      if (o.lazyRefcounts) header.compatibleFeatures |= spec.COMPAT_LAZY_REFCOUNTS
      else header.compatibleFeatures &= ~spec.COMPAT_LAZY_REFCOUNTS
      rewrite = true
    }
    if (rewrite) await image.rewriteHeader()
    // 5. resize
    if (o.size !== undefined && o.size !== image.virtualSize) await resizeImage(device, o.size, { shrink: true })
    // 6. downgrade
    if (!targetV3 && header.version >= 3) await downgrade(image)
  } finally {
    await device.close()
  }
}

/**
 * qcow2_downgrade: refuse what v2 cannot hold (in QEMU's order and words), expand the zero
 * clusters of every L1 table, then write a v2 header. The snapshot table stays as it is: its
 * v3 extra data (VM state size, disk size, icount) is kept, v2 readers skip it.
 */
async function downgrade(image: Qcow2Image): Promise<void> {
  const h = image.layout.header
  if (h.refcountOrder !== 4) throw new ImageError('UNSUPPORTED', 'compat=0.10 requires refcount_bits=16')
  if (image.layout.hasDataFile) throw new ImageError('UNSUPPORTED', 'Cannot downgrade an image with a data file')
  // v2 readers would not know that a snapshot of another size, or with a VM state beyond
  // 32 bits, needs its extra data.
  for (const s of image.snapshots) {
    if (s.vmStateSize > 0xffff_ffff || (s.diskSize ?? image.virtualSize) !== image.virtualSize) throw new ImageError('UNSUPPORTED', 'Internal snapshots prevent downgrade of image')
  }
  // The dirty bit (lazy refcounts) is cleared with the rest below; the refcounts are exact.
  const incompatible = h.incompatibleFeatures & ~(spec.INCOMPAT_COMPRESSION | spec.INCOMPAT_DIRTY)
  if (incompatible) throw new ImageError('UNSUPPORTED', `Cannot downgrade an image with incompatible features 0x${incompatible.toString(16)} set`)
  const hasBacking = h.backingFile !== undefined
  const { compressed } = await image.writer.withTables((a) => expandZeroClusters(a, image.snapshots, hasBacking))
  // As QEMU, only after the expansion (which stays done); unlike QEMU, snapshots count too.
  if (h.incompatibleFeatures & spec.INCOMPAT_COMPRESSION && compressed) throw new ImageError('UNSUPPORTED', 'Cannot downgrade an image with zstd compression type and existing compressed clusters')
  image.forgetBitmaps()
  h.version = 2
  h.incompatibleFeatures = 0n
  h.compatibleFeatures = 0n
  h.autoclearFeatures = 0n
  h.compressionType = spec.COMPRESSION_ZLIB
  h.headerLength = spec.HEADER_V2_LENGTH
  await image.rewriteHeader()
}
