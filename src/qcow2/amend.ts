// qcow2_amend_options: change what QCOW2 lets change after creation — compat (upgrade, and
// downgrade when nothing v3-only is in use), lazy_refcounts, refcount_bits (refcount structure
// rewritten), data_file, size — in QEMU's order: upgrade, refcount width, header, lazy
// refcounts, resize, downgrade.
import { ImageError } from '../errors.js'
import type { AmendHost } from '../format/amend-capability.js'
import type { Qcow2AmendOptions } from './amend-options.js'
import type { Storage } from '../io/storage.js'
import { computeReferences } from './check.js'
import { expandZeroClusters } from './expand-zero.js'
import { encodeHeaderCluster } from './header-encode.js'
import type { Qcow2Image } from './image.js'
import { writeRefcountStructure } from './refcount-rebuild.js'
import { storedRefcounts } from './refcount-stored.js'
import * as spec from './spec.js'

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

/** Amends the writable `driver`; steps that need the image closed (refcount width) go through `host`. */
export async function amendQcow2(driver: Qcow2Image, o: Qcow2AmendOptions, host: AmendHost): Promise<void> {
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
  let image = driver
  const refcountBits = o.refcountBits
  if (refcountBits !== undefined && refcountBits !== 2 ** h.refcountOrder) {
    // The same file opened the same way again: a qcow2 image.
    image = await host.whileClosed((storage) => changeRefcountWidth(storage, refcountBits)) as Qcow2Image
  }
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
  if (o.size !== undefined && o.size !== image.virtualSize) await host.resize(o.size)
  // 6. downgrade
  if (!targetV3 && header.version >= 3) await downgrade(image)
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
