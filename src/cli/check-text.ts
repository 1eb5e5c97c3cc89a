// qemu-img check's report as text: the human summary and --output=json (QAPI ImageCheck),
// shared by the check command and the inspector page.
import type { CheckReport } from '../format/capabilities.js'
import { toQemuJson } from './qjson.js'

/**
 * printf's %0.2f (check's percentages, and qemu-progress.c's bar): toFixed(2) breaks an exact tie
 * upwards, printf to the even digit (3.125 → 3.12).
 */
export function fixed2(x: number): string {
  const scaled = x * 100
  // Only multiples of 1/8 can be exact ties at two decimals.
  if (Number.isInteger(x * 8) && scaled - Math.floor(scaled) === 0.5) {
    const down = Math.floor(scaled)
    return ((down % 2 === 0 ? down : down + 1) / 100).toFixed(2)
  }
  return x.toFixed(2)
}

/** qemu-img check's human report (without the lines the check printed on the way). */
export function checkHuman(r: CheckReport): string {
  let out = ''
  if (!(r.corruptions || r.leaks || r.checkErrors)) out += 'No errors were found on the image.\n'
  else {
    if (r.corruptions) out += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`
    if (r.leaks) out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`
    if (r.checkErrors) out += `\n${r.checkErrors} internal errors have occurred during the check.\n`
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, d: number) => fixed2((n * 100) / d)
    out += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters\n`
  }
  if (r.imageEndOffset) out += `Image end offset: ${r.imageEndOffset}\n`
  return out
}

/** qemu-img check --output=json of a report. */
export function checkJson(r: CheckReport, filename: string, format: string): string {
  const opt = (n: number) => (n !== 0 ? n : undefined)
  return toQemuJson({
    filename, format, 'check-errors': r.checkErrors,
    'image-end-offset': opt(r.imageEndOffset), corruptions: opt(r.corruptions), leaks: opt(r.leaks),
    'corruptions-fixed': opt(r.corruptionsFixed), 'leaks-fixed': opt(r.leaksFixed),
    'total-clusters': opt(r.totalClusters), 'allocated-clusters': opt(r.allocatedClusters),
    'fragmented-clusters': opt(r.fragmentedClusters), 'compressed-clusters': opt(r.compressedClusters),
  }) + '\n'
}
