// The refcounts an image stores, as qcow2_change_refcount_order copies them into a structure of
// another width (amend -o refcount_bits).
import type { Storage } from '../io/storage.js'
import { decodeReftableEntry } from './entries.js'
import type { Qcow2Layout } from './open.js'
import { RefcountReader } from './refcount-read.js'

/**
 * The refcounts as stored, for `clusters` host clusters, with the clusters of the refcount
 * structure itself at 0: QEMU copies every refcount as it is (a wrong one stays for check to
 * find) and frees the old structure once the new one is in place.
 */
export async function storedRefcounts(storage: Storage, layout: Qcow2Layout, clusters: number): Promise<Float64Array> {
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
