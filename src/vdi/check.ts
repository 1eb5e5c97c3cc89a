// qemu-img check for VDI (vdi_co_check): the block map's entries against blocks_in_image, host
// blocks used twice, and the allocated count against the header. No repair (QEMU: -ENOTSUP).
import type { CheckReport } from '../format/capabilities.js'
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { isAllocated, readBmap } from './bmap.js'
import { decodeHeader, validateHeader, VDI_HEADER_BYTES } from './header.js'

/** QEMU's text when a format's check cannot do what was asked. */
export const NO_CHECK_TEXT = 'This image format does not support checks'

/** Checks the VDI image in `storage`, reporting QEMU's ERROR lines. */
export async function checkVdi(storage: ReadableStorage, options: { fix?: 'leaks' | 'all' | undefined; report: (line: string) => void }): Promise<CheckReport> {
  // qemu-img check opens the image first: vdi_open's rules refuse it before any check.
  const header = decodeHeader(await storage.read(0, VDI_HEADER_BYTES))
  validateHeader(header, storage.name)
  if (options.fix) throw new ImageError('UNSUPPORTED', `${storage.name}: VDI images cannot be repaired (${NO_CHECK_TEXT})`, { file: storage.name, qemuText: NO_CHECK_TEXT })
  const map = await readBmap(storage, header)
  const report: CheckReport = {
    checkErrors: 0, corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0,
    totalClusters: 0, allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0, imageEndOffset: 0,
  }
  const owner = new Uint32Array(header.blocksInImage).fill(0xffffffff)
  let allocated = 0
  for (let block = 0; block < map.length; block++) {
    const entry = map[block]!
    if (!isAllocated(entry)) continue
    if (entry < header.blocksInImage) {
      allocated++
      // QEMU records the host block's own index as its owner, and prints that.
      if (!isAllocated(owner[entry]!)) owner[entry] = entry
      else {
        options.report(`ERROR: block index ${owner[entry]} also used by ${entry}`)
        report.corruptions++
      }
    } else {
      options.report(`ERROR: block index ${block} too large, is ${entry}`)
      report.corruptions++
    }
  }
  if (allocated !== header.blocksAllocated) {
    options.report(`ERROR: allocated blocks mismatch, is ${allocated}, should be ${header.blocksAllocated}`)
    report.corruptions++
  }
  return report
}
