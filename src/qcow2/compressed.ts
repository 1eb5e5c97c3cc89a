// Compressed cluster descriptors ("Compressed Clusters Descriptor"): the byte range to read.
import type { L2Entry } from './entries.js'

/**
 * Host bytes holding a compressed cluster: from its byte offset to the end of its last sector
 * (the descriptor counts 512-byte sectors), cut at the end of the file as QEMU's reads are.
 */
export function compressedReadRange(entry: Extract<L2Entry, { kind: 'compressed' }>, fileSize: number): { hostOffset: number; length: number } {
  const length = entry.sectorCount * 512 - (entry.hostOffset % 512)
  return { hostOffset: entry.hostOffset, length: Math.min(length, fileSize - entry.hostOffset) }
}

/** Host clusters a compressed stream touches (each holds one reference per stream). */
export function compressedClusters(entry: Extract<L2Entry, { kind: 'compressed' }>, clusterSize: number): { firstCluster: number; lastCluster: number } {
  const end = entry.hostOffset + entry.sectorCount * 512 - (entry.hostOffset % 512)
  return { firstCluster: Math.floor(entry.hostOffset / clusterSize), lastCluster: Math.floor((end - 1) / clusterSize) }
}
