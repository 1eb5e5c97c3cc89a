// A VMDK image: its extents in guest order (flat files, sparse extents), the descriptor's CID
// rewritten on the first write of each open (vmdk_pwritev), sparse grains written through the
// generic unit writer, streamOptimized grains compressed at the end of the file as QEMU does.
import type { Codecs, Compressors } from '../codecs.js'
import type { BackingReference, GuestReader, WritableFormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import { layerInfo, type ImageInfo, type InfoMembers } from '../format/info.js'
import { UnitLocks, lockingUnits, writeUnits, type UnitAllocator } from '../format/unit-writer.js'
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import { withCid } from './descriptor.js'
import { SECTOR, VMDK_GTE_ZEROED } from './header.js'
import type { SeSparseExtent } from './sesparse.js'
import type { SparseExtent } from './sparse.js'
import { deflateZlib, inflateZlib } from './zlib.js'
import { extentsAlike, grainCompressor, noTable, sharedClusterSize } from './image-rules.js'

/** One extent of the image, placed in the guest. */
export type PlacedExtent =
  | { kind: 'flat'; storage: ReadableStorage; sectors: number; hostStart: number; type: string; guestStart: number }
  | { kind: 'sparse'; sparse: SparseExtent; sectors: number; type: string; guestStart: number }
  | { kind: 'sesparse'; sparse: SeSparseExtent; sectors: number; type: string; guestStart: number }

/** What {@link VmdkImage} is made of (see module.ts). */
export interface VmdkParts {
  storage: ReadableStorage
  extents: PlacedExtent[]
  createType: string
  cid: number
  parentCid: number
  backing: BackingReference | undefined
  /** Where the descriptor is in `storage` (0 for a descriptor file, 0x200 in a sparse file). */
  descOffset: number
  writable: boolean
  codecs: Codecs | undefined
  compressors: Compressors | undefined
  /** Extent files opened besides `storage`, closed with the image. */
  extentFiles: ReadableStorage[]
}

/** Bytes QEMU reads and rewrites of an embedded descriptor (DESC_SIZE). */
const DESC_SIZE = 20 * SECTOR
/** The largest descriptor file QEMU rewrites (vmdk_write_cid). */
const MAX_DESC_FILE = 16 * 1024 * 1024

export class VmdkImage implements WritableFormatDriver {
  readonly format = 'vmdk'
  readonly warnings: string[] = []
  readonly storage: ReadableStorage
  readonly virtualSize: number
  readonly backing: BackingReference | undefined
  readonly clusterSize: number | undefined
  readonly writable: boolean
  readonly createType: string
  cid: number
  readonly parentCid: number
  readonly extents: readonly PlacedExtent[]
  readonly #parts: VmdkParts
  readonly #locks = new UnitLocks()
  #cidUpdated = false
  /** Serializes stream appends (QEMU's s->lock around vmdk_pwritev). */
  #streamTail: Promise<unknown> = Promise.resolve()

  constructor(parts: VmdkParts) {
    this.#parts = parts
    this.storage = parts.storage
    this.extents = parts.extents
    const last = parts.extents[parts.extents.length - 1]
    this.virtualSize = last ? (last.guestStart + last.sectors) * SECTOR : 0
    this.backing = parts.backing
    this.writable = parts.writable
    this.createType = parts.createType
    this.cid = parts.cid
    this.parentCid = parts.parentCid
    this.clusterSize = sharedClusterSize(parts.extents)
  }

  /** vmdk_get_info: needs_compressed_writes when the first extent is compressed. */
  get needsCompressedWrites(): boolean {
    const first = this.extents[0]
    return first?.kind === 'sparse' && first.sparse.compressed
  }

  /** find_extent: the extent holding guest byte `offset`. */
  #find(offset: number): PlacedExtent {
    const sector = Math.floor(offset / SECTOR)
    let lo = 0
    let hi = this.extents.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      const e = this.extents[mid]!
      if (sector < e.guestStart + e.sectors) hi = mid
      else lo = mid + 1
    }
    const e = this.extents[lo]
    if (!e || offset < 0 || sector >= e.guestStart + e.sectors) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: offset ${offset} is past the end of the image (${this.virtualSize} bytes)`)
    }
    return e
  }

  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const e = this.#find(guestOffset)
    const start = e.guestStart * SECTOR
    const end = start + e.sectors * SECTOR
    const rel = guestOffset - start
    const room = Math.min(maxLength, end - guestOffset, this.virtualSize - guestOffset)
    if (e.kind === 'flat') return { kind: 'data', length: room, storage: e.storage, hostOffset: e.hostStart + rel }
    const grainBytes = e.sparse.grainBytes
    const grain = Math.floor(rel / grainBytes)
    const within = rel - grain * grainBytes
    const length = Math.min(room, grainBytes - within)
    const found = await e.sparse.lookup(grain)
    if (found.kind === 'data') return { kind: 'data', length, storage: e.sparse.storage, hostOffset: found.hostOffset + within }
    if (found.kind === 'compressed') {
      // A run of compressed grains is one extent, so that readEncodedInto fetches and inflates
      // it together.
      let runLength = length
      while (runLength < room && (await e.sparse.lookup(Math.floor((rel + runLength) / grainBytes))).kind === 'compressed') {
        runLength = Math.min(room, runLength + grainBytes)
      }
      return { kind: 'compressed', length: runLength }
    }
    return found.kind === 'zero' ? { kind: 'zero', length, hostOffset: undefined } : { kind: 'unallocated', length }
  }

  async readEncoded(guestOffset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length)
    await this.readEncodedInto(guestOffset, out)
    return out
  }

  /**
   * Fills `out` from a run of compressed grains (one extent of getExtent): their streams are
   * fetched with few host reads and inflated concurrently (on the worker pool when the codecs
   * run there), whole grains straight into `out`. Errors are those of the first failing grain
   * in guest order, as if read one by one (vmdk_read_extent).
   */
  async readEncodedInto(guestOffset: number, out: Uint8Array): Promise<void> {
    const e = this.#find(guestOffset)
    if (e.kind !== 'sparse') throw new ImageError('UNSUPPORTED', `${this.storage.name}: offset ${guestOffset} is in a flat extent, not compressed`)
    const sparse = e.sparse
    const g = sparse.grainBytes
    const extentBytes = e.sectors * SECTOR
    const rel = guestOffset - e.guestStart * SECTOR
    const end = rel + out.length
    if (end > extentBytes) throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: compressed read of ${out.length} bytes at ${guestOffset} crosses its extent`)
    const first = Math.floor(rel / g)
    const last = Math.ceil(end / g)
    const hosts: number[] = []
    for (let grain = first; grain < last; grain++) {
      const found = await sparse.lookup(grain)
      if (found.kind !== 'compressed') throw new ImageError('UNSUPPORTED', `${this.storage.name}: grain at offset ${e.guestStart * SECTOR + grain * g} is not compressed`)
      hosts.push(found.hostOffset)
    }
    // The grain after the run bounds the last stream (no read past it).
    const next = last * g < extentBytes ? await sparse.lookup(last).catch(() => undefined) : undefined
    const bound = next && next.kind === 'compressed' ? next.hostOffset : undefined
    const streams = sparse.compressedStreams(hosts, bound)
    const results = await Promise.allSettled(hosts.map(async (hostOffset, i) => {
      const grain = first + i
      const grainStart = grain * g
      const guestBytes = Math.min(g, extentBytes - grainStart)
      const from = Math.max(rel, grainStart)
      const to = Math.min(end, grainStart + guestBytes)
      const whole = from === grainStart && to === grainStart + guestBytes
      const stream = (await streams)[i]!
      const target = whole ? out.subarray(from - rel, to - rel) : undefined
      const plain = await this.#inflate(sparse, hostOffset, stream, guestBytes, target)
      if (to - grainStart > plain.length) throw new ImageError('CORRUPT', `${sparse.storage.name}: VMDK compressed grain at ${hex(hostOffset)} holds ${plain.length} bytes, not the ${to - grainStart} read`, { file: sparse.storage.name, offset: hostOffset, qemuText: 'Invalid argument' })
      if (plain !== target) out.set(plain.subarray(from - grainStart, to - grainStart), from - rel)
    }))
    for (const r of results) if (r.status === 'rejected') throw r.reason
  }

  async #inflate(sparse: SparseExtent, hostOffset: number, stream: Uint8Array, guestBytes: number, into: Uint8Array | undefined): Promise<Uint8Array> {
    const file = sparse.storage.name
    const inflate = this.#parts.codecs?.deflate
    if (!inflate) throw new ImageError('UNSUPPORTED', `${file}: no deflate codec to read compressed grains`, { file })
    try {
      return await inflateZlib(inflate, stream, guestBytes, into)
    } catch (first) {
      // A stream that fills the whole grain at the end of the extent (QEMU inflates into a grain).
      if (guestBytes < sparse.grainBytes) {
        const whole = await inflateZlib(inflate, stream, sparse.grainBytes).catch(() => undefined)
        if (whole) return whole
      }
      throw new ImageError('CORRUPT', `${file}: VMDK compressed grain at ${hex(hostOffset)}: ${(first as Error).message}`, { file, offset: hostOffset, qemuText: 'Invalid argument', cause: first })
    }
  }

  async consultHostHoles(): Promise<boolean> {
    // vmdk_co_block_status: flat extents are BDRV_BLOCK_RECURSE.
    return this.extents.length > 0 && this.extents.every((e) => e.kind === 'flat')
  }

  #out(): void {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`)
  }

  /** vmdk_write_cid with a new random CID, once per open, after the first piece written. */
  async #updateCid(): Promise<void> {
    if (this.#cidUpdated) return
    this.#cidUpdated = true
    const out = this.storage as Storage
    // bdrv_getlength of a descriptor file is whole sectors: QEMU reads (zeros past the end) and
    // writes back that much.
    const size = this.#parts.descOffset === 0 ? Math.ceil((await out.size()) / SECTOR) * SECTOR : DESC_SIZE
    if (size > MAX_DESC_FILE) throw new ImageError('UNSUPPORTED', `${out.name}: VMDK description file too big`, { file: out.name, qemuText: 'VMDK description file too big' })
    const stored = new Uint8Array(size)
    const available = Math.max(0, Math.min(size, (await out.size()) - this.#parts.descOffset))
    if (available > 0) stored.set(await out.read(this.#parts.descOffset, available))
    const cid = globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!
    await out.write(this.#parts.descOffset, withCid(stored, cid, out.name))
    await out.flush()
    this.cid = cid
  }

  #allocator(e: PlacedExtent & { kind: 'sparse' }): UnitAllocator {
    const sparse = e.sparse
    const out = sparse.storage as Storage
    const exclusive = lockingUnits(this.#locks, sparse.grainBytes, {
      plan: async (unit) => {
        if (!sparse.hasTable(unit)) throw noTable(out.name, unit)
        const found = await sparse.lookup(unit)
        return found.kind === 'data' ? { kind: 'inPlace', hostOffset: found.hostOffset } : { kind: 'allocate' }
      },
      allocateRun: async () => {
        const offset = sparse.reserveGrain() * SECTOR
        sparse.noteFileEnd(offset + sparse.grainBytes)
        return { hostOffset: offset, count: 1 }
      },
      writeData: (hostOffset, bytes) => out.write(hostOffset, bytes),
      linkRun: (unit, _count, hostOffset) => sparse.setEntry(unit, hostOffset / SECTOR),
    })
    return { unitSize: sparse.grainBytes, virtualSize: e.sectors * SECTOR, name: out.name, padUnits: true, exclusive }
  }

  /** vmdk_pwritev: extent by extent, grain by grain, in guest order. */
  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    this.#out()
    if (offset < 0 || offset + data.length > this.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: write of ${data.length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`)
    }
    for (let at = 0; at < data.length;) {
      const e = this.#find(offset + at)
      const start = e.guestStart * SECTOR
      const rel = offset + at - start
      const extentBytes = e.sectors * SECTOR
      if (e.kind === 'flat') {
        const n = Math.min(data.length - at, extentBytes - rel)
        await (e.storage as Storage).write(e.hostStart + rel, data.subarray(at, at + n))
        at += n
      } else if (e.kind === 'sesparse') {
        throw new ImageError('READ_ONLY', `${e.sparse.storage.name}: VMDK seSparse extents are read-only`, { file: e.sparse.storage.name })
      } else {
        const grain = e.sparse.grainBytes
        const n = Math.min(data.length - at, grain - (rel % grain), extentBytes - rel)
        const piece = data.subarray(at, at + n)
        if (e.sparse.compressed) await this.#streamWrite(e, rel, piece)
        else await writeUnits(this.#allocator(e), rel, piece, (o, l) => readGuest(start + o, l))
        at += n
      }
      await this.#updateCid()
    }
  }

  /**
   * A write to a streamOptimized extent (vmdk_pwritev with a compressed extent): only to a
   * grain not yet written, which is first reserved and zeroed at the end of the file
   * (get_whole_cluster), then only whole grains (or the extent's last, partial one) are stored,
   * as a marker and a zlib stream, the next grain starting at the sector after it.
   */
  async #streamWrite(e: PlacedExtent & { kind: 'sparse' }, rel: number, piece: Uint8Array, compressed?: Promise<Uint8Array>): Promise<void> {
    const sparse = e.sparse
    const out = sparse.storage as Storage
    const file = out.name
    const grain = Math.floor(rel / sparse.grainBytes)
    const within = rel - grain * sparse.grainBytes
    const run = this.#streamTail.then(async () => {
      if (!sparse.hasTable(grain)) throw noTable(file, grain)
      const found = await sparse.lookup(grain)
      if (found.kind === 'data' || found.kind === 'compressed') {
        throw new ImageError('IO', `${file}: Could not write to allocated cluster for streamOptimized (guest offset ${e.guestStart * SECTOR + rel})`, { file, qemuText: 'Could not write to allocated cluster for streamOptimized' })
      }
      const sector = sparse.reserveGrain()
      // QEMU's file grows by the whole grain reserved (its zeros, overwritten by the next grain's
      // record): the same length, by extending the file rather than writing 64 KiB of zeros.
      const reservedEnd = sector * SECTOR + sparse.grainBytes
      if (reservedEnd > sparse.fileSize) {
        await out.truncate(reservedEnd)
        sparse.noteFileEnd(reservedEnd)
      }
      const extentBytes = e.sectors * SECTOR
      if (within !== 0 || piece.length > sparse.grainBytes || (piece.length < sparse.grainBytes && rel + piece.length !== extentBytes) || !sparse.hasMarker) {
        throw new ImageError('INVALID_ARGUMENT', `${file}: streamOptimized VMDK takes only whole grains of ${sparse.grainBytes} bytes (a write of ${piece.length} bytes at guest offset ${e.guestStart * SECTOR + rel})`, { file })
      }
      const stream = await (compressed ?? this.#compress(file, piece))
      const record = new Uint8Array(12 + stream.length)
      const view = new DataView(record.buffer)
      view.setBigUint64(0, BigInt((e.guestStart * SECTOR + rel) / SECTOR), true)
      view.setUint32(8, stream.length, true)
      record.set(stream, 12)
      await out.write(sector * SECTOR, record)
      const end = sector * SECTOR + record.length
      sparse.noteFileEnd(end)
      sparse.nextClusterSector = Math.ceil(end / SECTOR)
      await sparse.setEntry(grain, sector)
    })
    this.#streamTail = run.catch(() => undefined)
    await run
  }

  #compress(file: string, piece: Uint8Array): Promise<Uint8Array> {
    const deflate = grainCompressor(this.#parts.compressors)
    if (!deflate) throw new ImageError('UNSUPPORTED', `${file}: no deflate compressor to write a streamOptimized grain`, { file })
    return deflateZlib(deflate, piece)
  }

  /**
   * vmdk_co_pwritev_compressed: the same path as a write (only a compressed extent stores the
   * grain compressed); for a stream the grain is compressed before its turn to be appended.
   */
  async writeCompressed(offset: number, data: Uint8Array, readGuest: GuestReader, compressors?: Compressors, after?: Promise<unknown>): Promise<void> {
    this.#out()
    const e = this.#find(offset)
    const rel = offset - e.guestStart * SECTOR
    if (e.kind === 'sparse' && e.sparse.compressed && rel + data.length <= e.sectors * SECTOR) {
      const deflate = grainCompressor(compressors) ?? grainCompressor(this.#parts.compressors)
      if (!deflate) throw new ImageError('UNSUPPORTED', `${this.storage.name}: no deflate compressor to write a streamOptimized grain`)
      const compressed = deflateZlib(deflate, data)
      compressed.catch(() => undefined)
      await after
      await this.#streamWrite(e, rel, data, compressed)
      await this.#updateCid()
      return
    }
    await after
    await this.write(offset, data, readGuest)
  }

  /**
   * vmdk_co_pwrite_zeroes through the block layer: grains wholly covered get the zeroed-grain
   * entry when the extent has the feature; everything else is written as zeros.
   */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader): Promise<void> {
    this.#out()
    const end = offset + length
    for (let at = offset; at < end;) {
      const e = this.#find(at)
      const start = e.guestStart * SECTOR
      const extentEnd = Math.min(end, start + e.sectors * SECTOR)
      if (e.kind === 'sparse' && e.sparse.hasZeroGrain && !e.sparse.compressed) {
        const grain = e.sparse.grainBytes
        const rel = at - start
        const first = Math.ceil(rel / grain)
        const last = Math.floor((extentEnd - start) / grain)
        if (last > first) {
          if (rel < first * grain) await this.#writeZeroBytes(at, start + first * grain - at, readGuest)
          for (let g = first; g < last; g++) {
            await this.#locks.with(g, async () => {
              if (!e.sparse.hasTable(g)) throw noTable(e.sparse.storage.name, g)
              if ((await e.sparse.lookup(g)).kind !== 'zero') await e.sparse.setEntry(g, VMDK_GTE_ZEROED)
            })
          }
          await this.#updateCid()
          if (start + last * grain < extentEnd) await this.#writeZeroBytes(start + last * grain, extentEnd - start - last * grain, readGuest)
          at = extentEnd
          continue
        }
      }
      await this.#writeZeroBytes(at, extentEnd - at, readGuest)
      at = extentEnd
    }
  }

  async #writeZeroBytes(offset: number, length: number, readGuest: GuestReader): Promise<void> {
    const piece = 1024 * 1024
    for (let at = 0; at < length; at += piece) await this.write(offset + at, new Uint8Array(Math.min(piece, length - at)), readGuest)
  }

  /** VMDK has no discard: QEMU's block layer succeeds doing nothing. */
  async discard(offset: number, length: number): Promise<void> {
    this.#out()
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: discard of ${length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`)
    }
  }

  async flush(): Promise<void> {
    if (!this.writable) return
    await (this.storage as Storage).flush()
    for (const f of this.#parts.extentFiles) await (f as Storage).flush()
  }

  /** The format-specific members of `info` (ImageInfoSpecificVmdk). */
  specificInfo(): InfoMembers {
    return {
      cid: this.cid,
      'parent-cid': this.parentCid,
      'create-type': this.createType,
      extents: this.extents.map((e) => {
        const sparse = e.kind === 'flat' ? undefined : e.sparse
        return {
          filename: (sparse?.storage ?? (e as { storage: ReadableStorage }).storage).name,
          format: e.type,
          'virtual-size': e.sectors * SECTOR,
          compressed: sparse?.compressed ? true : undefined,
          'cluster-size': sparse ? sparse.grainBytes : undefined,
        }
      }),
    }
  }

  async info(): Promise<ImageInfo> {
    // vmdk_get_allocated_file_size: the descriptor's file and every other extent file.
    let actual = await this.storage.allocatedSize?.()
    for (const f of this.#parts.extentFiles) {
      const a = await f.allocatedSize?.()
      actual = actual === undefined || a === undefined ? undefined : actual + a
    }
    // Without vmdk_co_get_info's answer (extents of different kinds) qemu-img prints no dirty flag.
    const dirtyFlag = extentsAlike(this.extents) ? false : undefined
    return layerInfo(this, { actualSize: actual, dirtyFlag, formatSpecific: { type: 'vmdk', data: this.specificInfo() } })
  }

  /** Closes the extent files only (the caller keeps the image's own file). */
  async closeExtents(): Promise<void> {
    for (const f of this.#parts.extentFiles) await f.close().catch(() => undefined)
  }

  async close(): Promise<void> {
    await this.closeExtents()
    await this.storage.close()
  }
}
