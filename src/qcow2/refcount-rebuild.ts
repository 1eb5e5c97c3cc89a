// Writing a whole new refcount structure (blocks, then table) after everything in use, from
// refcounts computed in memory: the repair path of check and the refcount_bits change of amend.
import { setU64 } from '../binary/bytes.js'
import type { Storage } from '../io/storage.js'
import { setRefcountEntry } from './refcount.js'

/**
 * Places new refcount blocks and a refcount table (entries `1 << refcountOrder` bits wide) at the
 * end of the file, describing `refs` plus themselves, writes and flushes them. The caller then
 * switches the header to the returned table.
 */
export async function writeRefcountStructure(storage: Storage, refs: Float64Array, fileSize: number, clusterSize: number, refcountOrder: number): Promise<{ tableOffset: number; tableClusters: number }> {
  const cs = clusterSize
  const perBlock = (cs * 8) >>> refcountOrder
  let end = refs.length
  while (end > 0 && !refs[end - 1]) end--
  const start = Math.max(end, Math.ceil(fileSize / cs))
  let blocks = 0
  let tableClusters = 0
  for (;;) {
    const covered = start + blocks + tableClusters
    const nextBlocks = Math.ceil(covered / perBlock)
    const nextTable = Math.ceil((nextBlocks * 8) / cs)
    if (nextBlocks === blocks && nextTable === tableClusters) break
    blocks = nextBlocks
    tableClusters = nextTable
  }
  const total = start + blocks + tableClusters
  const all = new Float64Array(total)
  all.set(refs.subarray(0, Math.min(refs.length, total)))
  for (let c = start; c < total; c++) all[c] = 1
  const table = new Uint8Array(tableClusters * cs)
  const tableView = new DataView(table.buffer)
  for (let b = 0; b < blocks; b++) {
    const block = new Uint8Array(cs)
    const view = new DataView(block.buffer)
    for (let k = 0; k < perBlock && b * perBlock + k < total; k++) setRefcountEntry(view, k, refcountOrder, all[b * perBlock + k]!)
    const offset = (start + b) * cs
    await storage.write(offset, block)
    setU64(tableView, b * 8, offset)
  }
  const tableOffset = (start + blocks) * cs
  await storage.write(tableOffset, table)
  await storage.flush()
  return { tableOffset, tableClusters }
}
