// qemu-img check for vhdx (vhdx_co_check): the open (with -r, writable, so a dirty log is
// replayed: one corruption fixed), then every BAT entry checked, each problem a corruption.
import type { CheckReport } from '../format/capabilities.js'
import type { FormatCheckOptions } from '../format/module.js'
import type { ReadableStorage } from '../io/storage.js'
import { checkBatEntries } from './bat.js'
import { openLayout } from './open.js'

export async function checkVhdx(storage: ReadableStorage, options: FormatCheckOptions): Promise<CheckReport> {
  const layout = await openLayout(storage, { writable: options.fix !== undefined })
  const problems = checkBatEntries(layout.bat, layout.metadata.virtualDiskSize, layout.fileSize, layout.regions, storage.name)
  for (const p of problems) options.report(p.qemuLine ?? p.message)
  return {
    checkErrors: 0, corruptions: problems.length, leaks: 0, corruptionsFixed: layout.logReplayed ? 1 : 0, leaksFixed: 0,
    totalClusters: 0, allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0, imageEndOffset: 0,
  }
}
