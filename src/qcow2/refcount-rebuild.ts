// Writing a whole new refcount structure (blocks, then table) after everything in use, from
// refcounts computed in memory: the repair path of check and the refcount_bits change of amend.
import { setU64 } from '../binary/bytes.js'
import type { Storage } from '../io/storage.js'
import { setRefcountEntry } from './refcount.js'
import { newRefArray, type RefArray } from './check-refs.js'

/**
 * Places new refcount blocks and a refcount table (entries `1 << refcountOrder` bits wide) at the
 * end of the file, describing `refs` plus themselves, writes and flushes them. The caller then
 * switches the header to the returned table.
 */
export async function writeRefcountStructure(storage: Storage, refs: RefArray, fileSize: number, clusterSize: number, refcountOrder: number): Promise<{ tableOffset: number; tableClusters: number }> {
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

/**
 * QEMU's rebuild_refcount_structure (the repair path of check -r all): each refcount block
 * goes to the first free cluster (by `refs`) at or after the start of the range it describes,
 * the table to the first free run of clusters; the blocks are written, re-written when placing
 * the table changed them, then the table. `refs` is the in-memory refcount array (one entry per
 * host cluster); the result carries it grown by the new clusters. The caller switches the header.
 */
export async function rebuildRefcountStructure(storage: Storage, refs: RefArray, clusterSize: number, refcountOrder: number): Promise<{ tableOffset: number; tableClusters: number; refs: RefArray }> {
  const cs = clusterSize
  const perBlock = (cs * 8) >>> refcountOrder
  let counts = refs
  let table: number[] = []

  // alloc_clusters_imrt: `count` contiguous clusters free in memory, from `from.cluster` on.
  const allocate = (count: number, from: { cluster: number }): number => {
    let cluster = from.cluster
    let run = 0
    let firstGap = true
    for (; cluster < counts.length && run < count; cluster++) {
      if (!counts[cluster]) {
        run++
        if (firstGap) {
          from.cluster = cluster
          firstGap = false
        }
      } else run = 0
    }
    if (run < count) {
      counts = newRefArray(counts, cluster + count - run)
    }
    cluster -= run
    for (let i = 0; i < count; i++) counts[cluster + i] = 1
    return cluster * cs
  }

  // rebuild_refcounts_write_refblocks: blocks for clusters in [first, end) in use; true when the table grew.
  const writeBlocks = async (first: number, end: number): Promise<boolean> => {
    const from = { cluster: 0 }
    let grown = false
    for (let cluster = first; cluster < end; cluster++) {
      if (!counts[cluster]) continue
      const index = Math.floor(cluster / perBlock)
      const blockStart = index * perBlock
      let offset = table[index] ?? 0
      if (!offset) {
        // Never inside a block already written.
        if (from.cluster < blockStart) from.cluster = blockStart
        offset = allocate(1, from)
        if (offset / cs >= end) end = offset / cs + 1 // the block holding its own refcount must be written
        if (table.length <= index) {
          const entries = Math.ceil(((index + 1) * 8) / cs) * (cs / 8)
          while (table.length < entries) table.push(0)
          grown = true
        }
        table[index] = offset
      }
      const block = new Uint8Array(cs)
      const view = new DataView(block.buffer)
      for (let k = 0; k < perBlock && blockStart + k < counts.length; k++) {
        const value = counts[blockStart + k]!
        if (value) setRefcountEntry(view, k, refcountOrder, value)
      }
      await storage.write(offset, block)
      cluster = blockStart + perBlock - 1
    }
    return grown
  }

  await writeBlocks(0, counts.length)
  let tableOffset: number
  let tableClusters: number
  let grown: boolean
  do {
    tableClusters = Math.ceil((table.length * 8) / cs)
    tableOffset = allocate(tableClusters, { cluster: 0 })
    const start = tableOffset / cs
    grown = await writeBlocks(start, start + tableClusters)
    if (grown) for (let c = start; c < start + tableClusters; c++) counts[c] = 0
  } while (grown)
  const bytes = new Uint8Array(table.length * 8)
  const view = new DataView(bytes.buffer)
  table.forEach((offset, i) => setU64(view, i * 8, offset))
  await storage.write(tableOffset, bytes)
  await storage.flush()
  return { tableOffset, tableClusters, refs: counts }
}
