// Copy-on-read (block/io.c, bdrv_co_do_copy_on_readv): a read through a node with copy-on-read
// on writes what the backing chain supplied into the top image, whole clusters of it, so later
// reads no longer reach the backing file. qemu-io -C and the copy-on-read filter driver use it.
import { isZero } from '../binary/bytes.js'
import type { BlockDevice } from './device.js'

/** MAX_BOUNCE_BUFFER: the most one copy step reads and writes. */
const MAX_BOUNCE_BYTES = 32768 * 512

/** The cluster size copy-on-read rounds to (bdrv_round_to_clusters; filters ask their child). */
function clusterBytes(device: BlockDevice): number {
  let node = device
  while (node.filterOf) node = node.filterOf
  return node.driver.clusterSize ?? 0
}

/**
 * Reads `length` guest bytes at `offset` with copy-on-read: over the range rounded out to whole
 * clusters, each run the top layer does not allocate is read and written back (zeros as a zero
 * write, as QEMU does when the driver has one), one bounce buffer at a time, in order, so a
 * request fails exactly where QEMU's would.
 */
export async function readCopyOnRead(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length)
  if (length === 0) return out
  const cluster = clusterBytes(device)
  const start = cluster ? Math.floor(offset / cluster) * cluster : offset
  const end = Math.min(device.size, cluster ? Math.ceil((offset + length) / cluster) * cluster : offset + length)
  for (let at = start; at < end;) {
    const status = await device.isAllocated(at, Math.min(end - at, MAX_BOUNCE_BYTES))
    const piece = Math.min(Math.max(status.length, 1), end - at)
    // Only what the caller asked for is read from an allocated run; an unallocated run is read whole.
    const wantStart = Math.max(at, offset)
    const wantEnd = Math.min(at + piece, offset + length)
    if (status.allocated) {
      if (wantEnd > wantStart) out.set(await device.read(wantStart, wantEnd - wantStart), wantStart - offset)
    } else {
      const data = await device.read(at, piece)
      await device.driver.storage.debugEvent?.('cor_write')
      if (isZero(data)) await device.writeZeroes(at, piece)
      else await device.write(at, data)
      if (wantEnd > wantStart) out.set(data.subarray(wantStart - at, wantEnd - at), wantStart - offset)
    }
    at += piece
  }
  return out
}
