// The seam between format drivers and everything generic (read, convert, map, compare, NBD):
// a driver answers where a guest range of its own layer lives; chains are handled above it.
import type { ReadableStorage } from '../io/storage.js'
import type { Extent } from './extent.js'
import type { ImageInfo } from './info.js'

/** The backing file an image names in its metadata. */
export interface BackingReference {
  /** The name exactly as stored in the image. */
  name: string
  /** The format stored with it, if any. */
  format: string | undefined
}

/** One image format over one storage (one layer of a chain). */
export interface FormatDriver {
  /** Format name as qemu-img prints it: 'qcow2', 'raw'. */
  readonly format: string
  /** The image file. */
  readonly storage: ReadableStorage
  /** Guest-visible size in bytes. */
  readonly virtualSize: number
  /** The backing file named by the image (undefined when none). */
  readonly backing: BackingReference | undefined
  /** Things a user should be told about this image (e.g. the corrupt flag). */
  readonly warnings: readonly string[]
  /**
   * Where the bytes at `guestOffset` live in this layer, for a run of at most `maxLength` bytes
   * (never beyond the virtual size). Always makes progress: length ≥ 1.
   */
  getExtent(guestOffset: number, maxLength: number): Promise<Extent>
  /** Decodes bytes of a `compressed` extent (within one extent). */
  readEncoded(guestOffset: number, length: number): Promise<Uint8Array>
  /** The same into `out` (every byte written), saving a copy; optional. */
  readEncodedInto?(guestOffset: number, out: Uint8Array): Promise<void>
  /**
   * Whether `map` should ask the host file about holes under data extents, as QEMU's block
   * status does for raw images and for qcow2 images that look metadata-preallocated.
   */
  consultHostHoles(): Promise<boolean>
  /**
   * The layer passes the file's block status through (raw, and protocols read as raw): a hole or
   * the end of the file is reported as not data, where a format such as qcow2 keeps DATA.
   */
  readonly passesFileStatus?: boolean
  /**
   * The format has no block status (QEMU's driver lacks bdrv_co_block_status, as vhdx's): map,
   * compare and NBD see every range as allocated data at no known offset, as QEMU reports it;
   * convert still skips what the driver's extents say reads as zeros (the same output, sooner).
   */
  readonly noBlockStatus?: boolean
  /**
   * Data must be written compressed, whole units in guest order (QEMU's needs_compressed_writes:
   * a streamOptimized VMDK): convert then compresses as with -c.
   */
  readonly needsCompressedWrites?: boolean
  /** Bytes per allocation unit (cluster, block) when the format has them: compressed writes and convert work in them. */
  readonly clusterSize?: number
  /** The facts `info` reports about this layer (without chain). */
  info(): Promise<ImageInfo>
  /** Releases the storage (and any data file). */
  close(): Promise<void>
}

/**
 * Reads current guest content through the whole chain (copy-on-write needs it). `readsAsZero`,
 * where the caller has block status, tells without reading whether a range reads as zeros
 * (QEMU's bdrv_is_zero_fast, which is_zero_cow asks): the write path then skips copying it.
 */
export type GuestReader = ((offset: number, length: number) => Promise<Uint8Array>) & {
  readsAsZero?: (offset: number, length: number) => Promise<boolean>
}

/** A driver opened for writing. */
export interface WritableFormatDriver extends FormatDriver {
  /** Writes guest bytes. */
  write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void>
  /**
   * Makes a range read as zeros; `unmap` allows deallocating (qemu-io write -z -u);
   * `readsAsZero` answers from block status through the chain (see {@link BlockDevice}).
   */
  writeZeroes(offset: number, length: number, readGuest: GuestReader, options?: { unmap?: boolean; readsAsZero?: (offset: number, length: number) => Promise<boolean> }): Promise<void>
  /** Gives whole clusters back; what they then read depends on the format. */
  discard(offset: number, length: number): Promise<void>
  /** Makes completed writes durable. */
  flush(): Promise<void>
}

/** True when the driver was opened for writing. */
export function isWritableDriver(driver: FormatDriver): driver is WritableFormatDriver {
  return (driver as { writable?: boolean }).writable === true
}
