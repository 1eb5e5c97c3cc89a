// qemu-img check for VMDK (vmdk_co_check): every grain's lookup must succeed and an allocated
// grain must start inside its extent file. No repair (QEMU: -ENOTSUP, "This image format does
// not support checks").
import type { CheckReport } from '../format/capabilities.js'
import type { FormatCheckOptions } from '../format/module.js'
import { ImageError, isImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { openVmdk } from './open.js'

const NO_CHECK_TEXT = 'This image format does not support checks'

/** Checks the VMDK image in `storage`, printing QEMU's ERROR lines. */
export async function checkVmdk(storage: ReadableStorage, options: FormatCheckOptions): Promise<CheckReport> {
  // qemu-img check opens the image first: vmdk_open's refusals come before any check.
  const image = await openVmdk(storage, { writable: false, codecs: undefined, compressors: undefined, openReferenced: options.openReferenced })
  try {
    if (options.fix) throw new ImageError('UNSUPPORTED', `${storage.name}: VMDK images cannot be repaired (${NO_CHECK_TEXT})`, { file: storage.name, qemuText: NO_CHECK_TEXT })
    const report: CheckReport = {
      checkErrors: 0, corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0,
      totalClusters: 0, allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0, imageEndOffset: 0,
    }
    for (const e of image.extents) {
      if (e.kind === 'flat') continue // get_cluster_offset of a flat extent always succeeds
      const sparse = e.sparse
      const fileSize = await sparse.storage.size()
      for (let sector = 0; sector < e.sectors; sector += sparse.clusterSectors) {
        const guestSector = e.guestStart + sector
        let found
        try {
          found = await sparse.lookup(sector / sparse.clusterSectors)
        } catch (error) {
          if (!isImageError(error, 'CORRUPT')) throw error
          // QEMU breaks out with VMDK_ERROR (-1): the check fails with EPERM's text.
          options.report(`ERROR: could not get cluster_offset for sector ${guestSector}`)
          return { ...report, corruptions: 1, failed: 'Operation not permitted' }
        }
        if ((found.kind === 'data' || found.kind === 'compressed') && found.hostOffset >= fileSize) {
          options.report(`ERROR: cluster offset for sector ${guestSector} points after EOF`)
          return { ...report, corruptions: 1, failed: 'Invalid argument' }
        }
      }
    }
    return report
  } finally {
    await image.closeExtents()
  }
}

