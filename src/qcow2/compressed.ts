// Compressed clusters ("Compressed Clusters Descriptor"): the byte range to read, the clusters
// a stream touches, and reading runs of clusters back through the image's codec.
import type { Codecs, Decompressor } from '../codecs.js'
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

/** Compressed streams that touch on the host are fetched with one read of up to this size. */
const MAX_MERGED_READ = 4 * 1024 * 1024
/** Decoded clusters kept for reads that cover only part of a cluster (QEMU keeps one). */
const CACHED_CLUSTERS = 8

/** Where one compressed cluster's stream lies, or why it cannot be read. */
type Located = { guestOffset: number; hostOffset: number; length: number; where: string } | { error: unknown }

/**
 * Reads compressed clusters back: the streams of a run of clusters are fetched with few host
 * reads and decompressed concurrently (the codecs may run on worker threads), and the last few
 * clusters read in part are kept decoded. Nothing here is locked: reads of different clusters
 * proceed independently, and concurrent reads of one cluster share its decoding.
 */
export class CompressedReader {
  readonly #ctx: LookupContext
  readonly #codecs: Codecs
  readonly #zstd: boolean
  readonly #cache = new Map<number, Promise<Uint8Array>>()

  constructor(ctx: LookupContext, codecs: Codecs, compressionType: number) {
    this.#ctx = ctx
    this.#codecs = codecs
    this.#zstd = compressionType === spec.COMPRESSION_ZSTD
  }

  /** Forgets decoded clusters (the image was written). */
  invalidate(): void {
    this.#cache.clear()
  }

  /**
   * Fills `out` with the guest bytes at `guestOffset`, which lie in compressed clusters. Errors
   * are those of the first failing cluster in guest order, as if read one by one.
   */
  async readInto(guestOffset: number, out: Uint8Array): Promise<void> {
    const cs = this.#ctx.geometry.clusterSize
    const end = guestOffset + out.length
    const starts: number[] = []
    for (let c = guestOffset - (guestOffset % cs); c < end; c += cs) starts.push(c)
    const decoded = new Map<number, Promise<Uint8Array>>()
    const missing: number[] = []
    for (const c of starts) {
      const cached = this.#cache.get(c)
      if (cached) decoded.set(c, cached)
      else missing.push(c)
    }
    // A cluster this read covers whole is decoded straight into `out` where the codec can.
    const into = new Map<number, Uint8Array>()
    for (const c of missing) if (c >= guestOffset && c + cs <= end) into.set(c, out.subarray(c - guestOffset, c - guestOffset + cs))
    // Claimed before any await, so a concurrent read of the same cluster shares the decoding.
    const plan = this.#decode(missing, into)
    missing.forEach((c, i) => {
      const promise = plan.then((fresh) => fresh[i]!)
      decoded.set(c, promise)
      // A cluster read in part is likely read again (small reads, copy-on-write): keep it.
      if (c < guestOffset || c + cs > end) this.#remember(c, promise)
    })
    const results = await Promise.allSettled(starts.map((c) => decoded.get(c)!))
    for (const [i, result] of results.entries()) {
      if (result.status === 'rejected') throw result.reason
      const c = starts[i]!
      if (result.value === into.get(c)) continue // decoded in place
      const from = Math.max(guestOffset, c)
      const to = Math.min(end, c + cs)
      out.set(result.value.subarray(from - c, to - c), from - guestOffset)
    }
  }

  #remember(clusterOffset: number, promise: Promise<Uint8Array>): void {
    this.#cache.set(clusterOffset, promise)
    promise.catch(() => {
      if (this.#cache.get(clusterOffset) === promise) this.#cache.delete(clusterOffset)
    })
    if (this.#cache.size > CACHED_CLUSTERS) this.#cache.delete(this.#cache.keys().next().value as number)
  }

  /** Starts decoding the clusters at `starts` (guest order): one promise each; `into`: targets. */
  async #decode(starts: number[], into: Map<number, Uint8Array>): Promise<Promise<Uint8Array>[]> {
    const cs = this.#ctx.geometry.clusterSize
    const file = this.#ctx.storage.name
    const located = await Promise.all(starts.map((c) => this.#locate(c).catch((error: unknown): Located => ({ error }))))
    const decoded: Promise<Uint8Array>[] = []
    let i = 0
    while (i < located.length) {
      const head = located[i]!
      if ('error' in head) {
        decoded.push(Promise.reject(head.error))
        i++
        continue
      }
      // Streams written one after another touch (each ends inside the sector the next starts in).
      let j = i + 1
      let readEnd = head.hostOffset + head.length
      for (; j < located.length; j++) {
        const next = located[j]!
        if ('error' in next || next.hostOffset < head.hostOffset || next.hostOffset > readEnd) break
        const nextEnd = Math.max(readEnd, next.hostOffset + next.length)
        if (nextEnd - head.hostOffset > MAX_MERGED_READ) break
        readEnd = nextEnd
      }
      this.#ctx.storage.debugEvent?.('read_compressed')
      const read = this.#ctx.storage.read(head.hostOffset, readEnd - head.hostOffset)
      for (const stream of located.slice(i, j) as Exclude<Located, { error: unknown }>[]) {
        decoded.push(read.then(async (bytes) => {
          const codec = this.#codec(stream.where)
          const input = bytes.subarray(stream.hostOffset - head.hostOffset, stream.hostOffset - head.hostOffset + stream.length)
          try {
            return await codec(input, cs, into.get(stream.guestOffset))
          } catch (cause) {
            throw new ImageError('CORRUPT', `${stream.where}: ${(cause as Error).message}`, { offset: stream.hostOffset, file, cause })
          }
        }))
      }
      i = j
    }
    // Each is awaited by readInto; a failure must not count as unhandled in the meantime.
    for (const promise of decoded) promise.catch(() => {})
    return decoded
  }

  #codec(where: string): Decompressor {
    const codec = this.#zstd ? this.#codecs.zstd : this.#codecs.deflate
    if (!codec) throw new ImageError('UNSUPPORTED', `${where}: no ${this.#zstd ? 'zstd' : 'deflate'} codec available`, { file: this.#ctx.storage.name })
    return codec
  }

  /** The host bytes of the compressed cluster at guest `guestOffset` (cluster aligned). */
  async #locate(guestOffset: number): Promise<Located> {
    const ctx = this.#ctx
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
    return { guestOffset, hostOffset: range.hostOffset, length: range.length, where }
  }
}
