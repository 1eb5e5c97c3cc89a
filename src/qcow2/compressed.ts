// Compressed clusters ("Compressed Clusters Descriptor"): the byte range to read, the clusters
// a stream touches, and reading one cluster back through the image's codec.
import type { Codecs } from '../codecs.js'
import { ImageError, hex } from '../errors.js'
import type { L2Entry } from './entries.js'
import { l1Index, l2Index } from './geometry.js'
import { loadL2, readL2Entry, type LookupContext } from './lookup.js'
import * as spec from './spec.js'

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

/** Reads and decompresses the compressed cluster at guest `guestOffset` (cluster aligned) with `codecs`. */
export async function decompressCluster(ctx: LookupContext, codecs: Codecs, compressionType: number, guestOffset: number): Promise<Uint8Array> {
  const g = ctx.geometry
  const file = ctx.storage.name
  const index = l1Index(g, guestOffset)
  const l1Hi = ctx.l1.getUint32(index * 8)
  const l1Lo = ctx.l1.getUint32(index * 8 + 4)
  const l2Offset = (l1Hi & 0x00ff_ffff) * 0x1_0000_0000 + ((l1Lo & 0xffff_fe00) >>> 0)
  const table = await loadL2(ctx, l2Offset, `L1 entry ${index}`)
  const { entry } = readL2Entry(ctx, table, l2Index(g, guestOffset))
  if (entry.kind !== 'compressed') throw new Error('readEncoded on a cluster that is not compressed')
  const range = compressedReadRange(entry, ctx.fileSize)
  const where = `${file}: compressed cluster at guest ${hex(guestOffset)} (host ${hex(entry.hostOffset)})`
  if (range.length <= 0) throw new ImageError('CORRUPT', `${where} starts past end of file`, { offset: entry.hostOffset, file })
  const input = await ctx.storage.read(range.hostOffset, range.length)
  const codec = compressionType === spec.COMPRESSION_ZSTD ? codecs.zstd : codecs.deflate
  if (!codec) throw new ImageError('UNSUPPORTED', `${where}: no ${compressionType === spec.COMPRESSION_ZSTD ? 'zstd' : 'deflate'} codec available`, { file })
  try {
    return await codec(input, g.clusterSize)
  } catch (cause) {
    throw new ImageError('CORRUPT', `${where}: ${(cause as Error).message}`, { offset: entry.hostOffset, file, cause })
  }
}
