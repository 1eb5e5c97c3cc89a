// A QCOW2 image opened for reading: one layer of a chain, answering extents from the active L1
// table or from a snapshot's. Implements FormatDriver.
import type { Codecs, Compressors } from '../codecs.js'
import { ImageError, hex } from '../errors.js'
import type { BackingReference, FormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import type { ImageInfo } from '../format/info.js'
import type { MakeEmpty, ResizeRequest, Resizable, SetBacking, Snapshots, VmState } from '../format/capabilities.js'
import type { PersistentBitmaps } from '../format/bitmap-capability.js'
import type { Amendable, AmendHost } from '../format/amend-capability.js'
import { parseQcow2AmendOptions, QCOW2_AMEND_OPTION_NAMES } from './amend-options.js'
import { isWritable, type ReadableStorage, type Storage } from '../io/storage.js'
import { allocUninitialized, setU64 } from '../binary/bytes.js'
import { RefcountManager } from './refcount.js'
import { Qcow2Writer, type GuestReader, type ZeroOptions } from './writer.js'
import { CompressedReader } from './compressed.js'
import { BitmapSet, loadBitmaps } from './bitmaps-store.js'
import type { DirtyBitmap } from './bitmap-data.js'
import { getExtent, type LookupContext } from './lookup.js'
import { openWarnings, type Qcow2Layout } from './open.js'
import { detectMetadataPreallocation } from './refcount-read.js'
import type { Snapshot } from './snapshot.js'
import { snapshotTableSize } from './snapshot-ops.js'
import { applyImageSnapshot, createImageSnapshot, deleteImageSnapshot } from './image-snapshots.js'
import { clearStaleAutoclear, encodeHeaderCluster, writeHeaderPointer } from './header-encode.js'
import * as spec from './spec.js'
import { grownL1Entries, perTableRanges, vmStateOffset } from './vmstate.js'
import { l1Index } from './geometry.js'
import { openQcow2Context, type Qcow2OpenOptions } from './image-options.js'
import { describeQcow2 } from './image-info.js'
import { emptyQcow2, resizeQcow2 } from './resize.js'
import { amendQcow2 } from './amend.js'
import { bitmapRefusal } from './bitmap-refusal.js'
import { dataForWriting, encryptionInfo, hideEncryptedData, openEncryption, readDecrypted, type Qcow2Encryption } from './crypto/encryption.js'

export type { Qcow2OpenOptions }

/** A read-only QCOW2 layer. */
export class Qcow2Image implements FormatDriver, Resizable, MakeEmpty, SetBacking, Snapshots, VmState, PersistentBitmaps, Amendable {
  readonly format = 'qcow2'
  readonly storage: ReadableStorage
  readonly layout: Qcow2Layout
  readonly snapshots: Snapshot[]
  readonly warnings: string[]
  readonly dataStorage: ReadableStorage
  /** The unit a write allocates: the subcluster. */
  readonly allocationUnit: number
  readonly #ctx: LookupContext
  readonly #decoded: CompressedReader
  #preallocation: Promise<boolean> | undefined
  #writer: Qcow2Writer | undefined
  #compressors: Compressors | undefined
  #setDirtyBit = false
  #encryption: Qcow2Encryption | undefined
  #bitmaps: BitmapSet | undefined

  private constructor(storage: ReadableStorage, layout: Qcow2Layout, snapshots: Snapshot[], ctx: LookupContext, codecs: Codecs) {
    this.storage = storage
    this.layout = layout
    this.snapshots = snapshots
    this.#ctx = ctx
    this.dataStorage = ctx.dataStorage
    this.allocationUnit = layout.geometry.subclusterSize
    this.#decoded = new CompressedReader(ctx, codecs, layout.header.compressionType)
    this.warnings = openWarnings(layout)
  }

  /** Bytes per cluster. */
  get clusterSize(): number {
    return this.layout.geometry.clusterSize
  }

  /** Opens `storage` as QCOW2, validating the header and loading the L1 table. */
  static async open(storage: ReadableStorage, options: Qcow2OpenOptions = {}): Promise<Qcow2Image> {
    const { layout, snapshots, ctx } = await openQcow2Context(storage, options)
    const { header } = layout
    const dataStorage = ctx.dataStorage
    const image = new Qcow2Image(storage, layout, snapshots, ctx, options.codecs ?? {})
    image.#compressors = options.compressors
    // The secret is checked now (BAD_KEY before anything is written); a data file opened is closed on failure.
    image.#encryption = await openEncryption(storage, header, options).catch(async (e: unknown) => { if (dataStorage !== storage) await dataStorage.close().catch(() => undefined); throw e })
    if (options.writable) {
      if (options.snapshot !== undefined) throw new ImageError('READ_ONLY', `${storage.name}: a snapshot can only be opened read-only`, { file: storage.name })
      await image.#openForWriting()
    }
    return image
  }

  /** Sets up the write engine: checks the image may be written, clears stale autoclear bits. */
  async #openForWriting(): Promise<void> {
    const storage = this.storage
    const h = this.layout.header
    const file = storage.name
    if (!isWritable(storage) || !isWritable(this.dataStorage)) throw new ImageError('READ_ONLY', `${file}: storage is not writable`, { file })
    if (h.incompatibleFeatures & spec.INCOMPAT_CORRUPT) throw new ImageError('CORRUPT', `${file}: image is corrupt; cannot be opened read/write (run 'qimg check -r all')`, { file, offset: 72 })
    if (h.incompatibleFeatures & spec.INCOMPAT_DIRTY) throw new ImageError('UNSUPPORTED', `${file}: image was not closed cleanly (dirty bit); repair its refcounts with 'qimg check -r all' first`, { file, offset: 72 })
    const cs = this.layout.geometry.clusterSize
    const reftableBytes = h.refcountTableClusters * cs
    if (h.refcountTableOffset + reftableBytes > this.layout.fileSize) throw new ImageError('CORRUPT', `${file}: refcount table at ${hex(h.refcountTableOffset)} runs past end of file`, { file, offset: h.refcountTableOffset })
    const reftable = await storage.read(h.refcountTableOffset, reftableBytes)
    await clearStaleAutoclear(storage as Storage, h)
    const layout = { clusterSize: cs, refcountOrder: h.refcountOrder, reftableOffset: h.refcountTableOffset, reftableClusters: h.refcountTableClusters }
    const refcounts = new RefcountManager(storage, layout, reftable, this.layout.fileSize, 64, {
      switchReftable: async (offset, clusters) => {
        await writeHeaderPointer(storage, { field: 'reftable', offset, clusters })
        h.refcountTableOffset = offset
        h.refcountTableClusters = clusters
      },
    })
    this.#writer = new Qcow2Writer(this.#ctx, storage, dataForWriting(this.#encryption, this.dataStorage as Storage), refcounts, {
      switchL1: async (offset, entries) => {
        await writeHeaderPointer(storage, { field: 'l1', entries, offset })
        h.l1TableOffset = offset
        h.l1Size = entries
        this.#ctx.l1TableOffset = offset
      },
      beforeFirstWrite: async () => {
        // Lazy refcounts: the dirty bit is on while the image is open for writing (spec, bit 0).
        if (h.compatibleFeatures & spec.COMPAT_LAZY_REFCOUNTS) {
          h.incompatibleFeatures |= spec.INCOMPAT_DIRTY
          await this.#writeHeaderU64(72, h.incompatibleFeatures)
          this.#setDirtyBit = true
        }
      },
      metadataRanges: () => {
        const cs = this.layout.geometry.clusterSize
        const ranges = [{ offset: h.snapshotsOffset, length: snapshotTableSize(this.snapshots), what: 'snapshot table' }]
        for (const s of this.snapshots) ranges.push({ offset: s.l1TableOffset, length: s.l1Size * 8, what: 'inactive L1 table' })
        if (h.bitmaps && (h.autoclearFeatures & spec.AUTOCLEAR_BITMAPS)) ranges.push({ offset: h.bitmaps.directoryOffset, length: h.bitmaps.directorySize, what: 'bitmap directory' })
        if (h.cryptoHeader) ranges.push({ offset: h.cryptoHeader.offset, length: Math.max(h.cryptoHeader.length, cs), what: 'LUKS header' })
        return ranges.filter((r) => r.offset !== 0 && r.length > 0)
      },
      refcountsMayLag: () => this.#setDirtyBit,
      markCorrupt: async () => {
        // v2 has no corrupt bit; the writer refuses further writes either way.
        if (h.version < 3) return
        h.incompatibleFeatures |= spec.INCOMPAT_CORRUPT
        await this.#writeHeaderU64(72, h.incompatibleFeatures)
      },
    }, {
      version: h.version, hasBacking: h.backingFile !== undefined,
      rawDataFile: this.layout.hasDataFile && (h.autoclearFeatures & spec.AUTOCLEAR_DATA_FILE_RAW) !== 0n,
    })
    this.#writer.setL1Offset(h.l1TableOffset)
    if (h.version >= 3) this.#bitmaps = await BitmapSet.open({ storage: storage as Storage, layout: this.layout, writeHeader: () => this.#writeHeaderCluster() })
  }

  /** The whole header cluster from the in-memory header, durably (QEMU's qcow2_update_header). */
  async #writeHeaderCluster(): Promise<void> {
    const bytes = new Uint8Array(this.layout.geometry.clusterSize)
    bytes.set(encodeHeaderCluster(this.layout.header))
    const storage = this.storage as Storage
    await storage.write(0, bytes)
    await storage.flush()
  }

  /** Reads the persistent bitmaps without changing the image (those in use come back inconsistent, without data). */
  async readBitmaps(): Promise<DirtyBitmap[]> {
    return this.#bitmaps?.bitmaps ?? (await loadBitmaps(this.storage, this.layout)).bitmaps
  }

  /**
   * Stops tracking and storing the persistent bitmaps: a downgrade to v2 drops the bitmaps
   * extension with the autoclear bits, and their clusters leak, as with qemu-img amend.
   */
  forgetBitmaps(): void {
    this.#bitmaps = undefined
  }

  /** Bitmaps need a version 3 image. */
  get storesBitmaps(): boolean {
    return this.layout.header.version >= 3
  }

  loadedBitmaps(): readonly DirtyBitmap[] {
    return this.#bitmaps?.bitmaps ?? []
  }

  bitmapRefusal(name: string, granularity: number): string | undefined {
    return bitmapRefusal(this.#bitmaps, this.layout, this.virtualSize, name, granularity)
  }

  addBitmap(name: string, granularity: number, index?: number): DirtyBitmap {
    if (!this.#bitmaps) throw new ImageError('UNSUPPORTED', `${this.storage.name}: no persistent bitmaps loaded (image open read-only or version 2)`)
    return this.#bitmaps.add(name, granularity, index)
  }

  /** Deletes a persistent bitmap from the image now (block-dirty-bitmap-remove). */
  async removeBitmap(name: string): Promise<void> {
    const set = this.#bitmaps
    if (set) await this.#requireWriter().withTables((a) => set.remove(a, name))
  }

  async #writeHeaderU64(offset: number, value: bigint): Promise<void> {
    const bytes = new Uint8Array(8)
    new DataView(bytes.buffer).setBigUint64(0, value)
    const storage = this.storage as Storage
    await storage.write(offset, bytes)
    await storage.flush()
  }

  /** True when opened for writing. */
  get writable(): boolean {
    return this.#writer !== undefined
  }

  #requireWriter(): Qcow2Writer {
    if (!this.#writer) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`, { file: this.storage.name })
    return this.#writer
  }

  /** Writes guest bytes; `readGuest` gives the current content (with backing) for copy-on-write. */
  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    this.#decoded.invalidate()
    this.#bitmaps?.markDirty(offset, data.length)
    await this.#requireWriter().write(offset, data, readGuest)
  }

  /**
   * Writes one whole cluster compressed with the image's compression type (QEMU's
   * pwrite_compressed): stored uncompressed when that is not smaller. `compress` defaults to
   * the compressors given at open. The write waits for `after` (once compressed), so a caller
   * compressing many clusters at once still allocates them in the order it chooses.
   */
  async writeCompressed(offset: number, data: Uint8Array, readGuest: GuestReader, compressors?: Compressors, after?: Promise<unknown>): Promise<void> {
    const cs = this.layout.geometry.clusterSize
    if (offset % cs !== 0 || (data.length !== cs && offset + data.length !== this.virtualSize)) {
      throw new ImageError('INVALID_ARGUMENT', `${this.storage.name}: compressed writes must cover whole clusters (offset ${offset}, ${data.length} bytes)`)
    }
    let cluster = data
    if (data.length < cs) {
      cluster = new Uint8Array(cs) // the last partial cluster is zero-padded
      cluster.set(data)
    }
    const zstd = this.layout.header.compressionType === spec.COMPRESSION_ZSTD
    const compressor = zstd ? (compressors ?? this.#compressors)?.zstd : (compressors ?? this.#compressors)?.deflate
    if (!compressor) throw new ImageError('UNSUPPORTED', `${this.storage.name}: no ${zstd ? 'zstd' : 'deflate'} compressor available`)
    if (this.encrypted) throw new ImageError('UNSUPPORTED', `${this.storage.name}: Compression and encryption not supported at the same time`)
    const compressed = await compressor(cluster, cs)
    await after
    this.#decoded.invalidate()
    if (!compressed) return this.write(offset, data, readGuest)
    this.#bitmaps?.markDirty(offset, data.length)
    await this.#requireWriter().writeCompressed(offset, compressed)
  }

  /** Makes a range read as zeros, using the zero flag where whole clusters are covered. */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader, options: ZeroOptions = {}): Promise<void> {
    this.#decoded.invalidate()
    this.#bitmaps?.markDirty(offset, length)
    await this.#requireWriter().writeZeroes(offset, length, readGuest, options)
  }

  /** Deallocates whole clusters in the range. */
  async discard(offset: number, length: number): Promise<void> {
    this.#decoded.invalidate()
    this.#bitmaps?.markDirty(offset, length)
    await this.#requireWriter().discard(offset, length)
  }

  /**
   * Writes `data` at `pos` of the VM state area (qcow2_save_vmstate), growing the L1 table as
   * get_cluster_table grows it, one L2 table at a time.
   */
  async saveVmState(pos: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const writer = this.#requireWriter()
    const g = this.layout.geometry
    const offset = vmStateOffset(g, this.layout.header.size) + pos
    await this.#beyondDisk(offset + data.length, async () => {
      for (const { start, end } of perTableRanges(g, offset, data.length)) {
        const needed = l1Index(g, start) + 1
        if (needed > this.layout.header.l1Size) await writer.growL1(grownL1Entries(this.layout.header.l1Size, needed))
        this.#decoded.invalidate()
        await writer.write(start, data.subarray(start - offset, end - offset), readGuest)
      }
    })
  }

  /** Reads `length` bytes at `pos` of the VM state area (qcow2_load_vmstate) with `read` (the chain's reader). */
  async loadVmState(pos: number, length: number, read: GuestReader): Promise<Uint8Array> {
    const offset = vmStateOffset(this.layout.geometry, this.layout.header.size) + pos
    return this.#beyondDisk(offset + length, () => read(offset, length))
  }

  /**
   * Runs `io` with the guest address space reaching the cluster holding `end` and no dirty
   * tracking: QEMU's vmstate calls go to the driver directly, past the block layer's size check
   * and its bitmaps, and a partial cluster there is completed as any other (whole-cluster COW).
   */
  async #beyondDisk<T>(end: number, io: () => Promise<T>): Promise<T> {
    const size = this.#ctx.virtualSize
    const bitmaps = this.#bitmaps
    const cs = this.layout.geometry.clusterSize
    this.#ctx.virtualSize = Math.max(size, Math.ceil(end / cs) * cs)
    this.#bitmaps = undefined
    try {
      return await io()
    } finally {
      this.#ctx.virtualSize = size
      this.#bitmaps = bitmaps
    }
  }

  /** Where the VM state area starts (QEMU's qcow2_vm_state_offset). */
  vmStateOffset(): number {
    return vmStateOffset(this.layout.geometry, this.virtualSize)
  }

  /** Makes completed writes durable. */
  async flush(): Promise<void> {
    if (this.#writer) await this.#writer.flush()
  }

  /** The writer, for commands that change structure (resize, preallocation). */
  get writer(): Qcow2Writer {
    return this.#requireWriter()
  }

  /** Creates an internal snapshot of the current state (qemu-img snapshot -c). */
  createSnapshot(name: string, now = Date.now()): Promise<Snapshot> {
    return createImageSnapshot(this, name, now)
  }

  /** Reverts the disk to snapshot `key` (ID or name) (qemu-img snapshot -a). */
  async applySnapshot(key: string): Promise<void> {
    // The guest content is the snapshot's afterwards (unknown after a failure): no decoded cluster stays.
    await applyImageSnapshot(this, key).finally(() => this.#decoded.invalidate())
  }

  /** Deletes snapshot `key` (ID or name) (qemu-img snapshot -d). */
  deleteSnapshot(key: string): Promise<void> {
    return deleteImageSnapshot(this, key)
  }

  /**
   * Rewrites the first cluster from the in-memory header (QEMU's qcow2_update_header): used
   * when the backing file, data file name, features or version change.
   */
  async rewriteHeader(): Promise<void> {
    await this.#requireWriter().flush()
    await this.#writeHeaderCluster()
  }

  /** Changes the backing file name and format recorded in the header (rebase, commit). */
  async setBacking(name: string | undefined, format: string | undefined): Promise<void> {
    const h = this.layout.header
    const old = { name: h.backingFile, format: h.backingFormat }
    h.backingFile = name
    h.backingFormat = name === undefined ? undefined : format
    try {
      await this.rewriteHeader()
    } catch (e) {
      h.backingFile = old.name
      h.backingFormat = old.format
      throw e
    }
  }

  /** qemu-img resize, qemu-io truncate (qcow2_co_truncate). */
  async resize(size: number, request: ResizeRequest): Promise<void> {
    await resizeQcow2(this, size, request)
  }

  /** Every cluster deallocated, the file cut (qcow2_make_empty, after a commit). */
  makeEmpty(): Promise<void> {
    return emptyQcow2(this)
  }

  /** qemu-img amend (qcow2_amend_options): the option names and values (amend-options.ts), then the change. */
  readonly amendOptionNames = QCOW2_AMEND_OPTION_NAMES
  readonly amend = (options: ReadonlyMap<string, string>, host: AmendHost): Promise<void> => amendQcow2(this, parseQcow2AmendOptions(options, this.backing), host)

  /** Changes the virtual size kept in memory and the header (resize). */
  async setVirtualSize(size: number): Promise<void> {
    this.#bitmaps?.checkResizable()
    const bytes = new Uint8Array(8)
    setU64(new DataView(bytes.buffer), 0, size)
    const storage = this.storage as Storage
    await storage.write(24, bytes)
    await storage.flush()
    this.layout.header.size = size
    this.#ctx.virtualSize = size
    this.#bitmaps?.resize(size)
  }

  /** Guest-visible size in bytes (of the snapshot when reading one). */
  get virtualSize(): number {
    return this.#ctx.virtualSize
  }

  get backing(): BackingReference | undefined {
    const h = this.layout.header
    return h.backingFile === undefined ? undefined : { name: h.backingFile, format: h.backingFormat }
  }

  get encrypted(): boolean {
    return this.layout.header.cryptMethod !== spec.CRYPT_NONE
  }

  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const extent = await getExtent(this.#ctx, guestOffset, maxLength)
    return this.#encryption ? hideEncryptedData(extent) : extent
  }

  /** Decompresses (or decrypts) `length` bytes of a `compressed` extent. */
  async readEncoded(guestOffset: number, length: number): Promise<Uint8Array> {
    const out = allocUninitialized(length) // readEncodedInto writes every byte
    await this.readEncodedInto(guestOffset, out)
    return out
  }

  /** Fills `out` from a `compressed` extent: its clusters are decompressed concurrently. */
  async readEncodedInto(guestOffset: number, out: Uint8Array): Promise<void> {
    const decrypted = this.#encryption && await readDecrypted(this.#encryption, this.#ctx, guestOffset, out.length)
    if (decrypted) out.set(decrypted)
    else await this.#decoded.readInto(guestOffset, out)
  }

  consultHostHoles(): Promise<boolean> {
    this.#preallocation ??= detectMetadataPreallocation(this.storage, this.layout)
    return this.#preallocation
  }

  async info(): Promise<ImageInfo> {
    return describeQcow2(this.storage, this.layout, this.snapshots, this.encrypted, encryptionInfo(this.#encryption))
  }

  async close(): Promise<void> {
    let failures: string[] = []
    if (this.#writer) {
      // Bitmaps are stored before the final flush, so their clusters are written back with it.
      const set = this.#bitmaps
      if (set) await this.#writer.withTables((a) => set.store(a))
      failures = await this.#writer.closeFlush()
    }
    if (this.#writer && failures.length === 0 && this.#setDirtyBit && this.layout.header.version >= 3) {
      // The refcount blocks written at close are durable before the bit says they are right (qcow2_mark_clean).
      await (this.storage as Storage).flush()
      this.layout.header.incompatibleFeatures &= ~spec.INCOMPAT_DIRTY
      await this.#writeHeaderU64(72, this.layout.header.incompatibleFeatures)
    }
    if (this.dataStorage !== this.storage) await this.dataStorage.close()
    await this.storage.close()
    // Several reports in one message, as reportError prints them (cli/context.ts).
    if (failures.length > 0) throw new ImageError('IO', failures.join('\nqimg: '), { file: this.storage.name })
  }
}
