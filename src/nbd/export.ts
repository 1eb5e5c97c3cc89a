// One NBD export over a block device: what the handshake advertises (size, transmission flags,
// block sizes, contexts) and the device operations behind each command, as qemu-nbd 7.2 sets
// them up (nbd/server.c nbd_export_create, nbd_negotiate_handle_info; qemu-nbd.c main).
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'
import type { FormatDriver } from '../format/driver.js'
import type { PersistentBitmap } from '../format/bitmap-capability.js'
import {
  NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_MAX_BUFFER_SIZE, NBD_MAX_STRING_SIZE,
} from './constants.js'
import type { MetaOffer } from './meta-context.js'
import { encodeString } from './handshake.js'

/** How an export is set up (qemu-nbd's options). */
export interface ExportOptions {
  /** -x: the export name (default ''). */
  name?: string
  /** -D: a description for clients. */
  description?: string | undefined
  /** -r: no writes. */
  readOnly?: boolean
  /** -e: clients served at once; anything but 1 advertises multi-conn (nbd_server_max_connections() != 1). */
  maxConnections?: number
  /** -A: offer qemu:allocation-depth. */
  allocationDepth?: boolean
  /** -B: persistent dirty bitmaps offered as qemu:dirty-bitmap:NAME. */
  bitmaps?: readonly string[]
  /** --discard: 'unmap' lets TRIM and WRITE_ZEROES deallocate; 'ignore' (default) drops TRIM. */
  discard?: 'ignore' | 'unmap'
  /** --detect-zeroes: writes of zeros become zero writes ('unmap': deallocating ones). */
  detectZeroes?: 'off' | 'on' | 'unmap'
  /** --cache=writethrough/directsync: every write is made durable before its reply. */
  writethrough?: boolean
}

/** A format whose persistent bitmaps can be read (qcow2). */
interface BitmapReader {
  readBitmaps(): Promise<PersistentBitmap[]>
}

function canReadBitmaps(driver: FormatDriver): driver is FormatDriver & BitmapReader {
  return typeof (driver as Partial<BitmapReader>).readBitmaps === 'function'
}

/** An export ready to serve. Commands on it are safe to run concurrently (the device is). */
export class NbdExport {
  readonly device: BlockDevice
  readonly name: string
  readonly nameBytes: Uint8Array
  readonly description: Uint8Array | undefined
  readonly readOnly: boolean
  /** Export size: the device's, rounded down to 512-byte sectors as QEMU does. */
  readonly size: number
  readonly transmissionFlags: number
  /** Minimum block size when the client agrees to honour it (blk_get_request_alignment). */
  readonly requestAlignment: number
  readonly preferredBlockSize: number
  readonly maximumBlockSize: number
  readonly offer: MetaOffer
  readonly bitmaps: readonly PersistentBitmap[]
  readonly discard: 'ignore' | 'unmap'
  readonly detectZeroes: 'off' | 'on' | 'unmap'
  readonly writethrough: boolean

  private constructor(device: BlockDevice, options: ExportOptions, requestAlignment: number, bitmaps: PersistentBitmap[]) {
    this.device = device
    this.name = options.name ?? ''
    this.nameBytes = encodeString(this.name)
    this.description = options.description === undefined ? undefined : encodeString(options.description)
    this.readOnly = options.readOnly ?? !device.writable
    this.size = Math.floor(device.size / 512) * 512
    let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE
    if ((options.maxConnections ?? 1) !== 1) flags |= NBD_FLAG_CAN_MULTI_CONN
    flags |= this.readOnly ? NBD_FLAG_READ_ONLY : NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO
    this.transmissionFlags = flags
    this.requestAlignment = requestAlignment
    this.preferredBlockSize = Math.max(4096, requestAlignment)
    this.maximumBlockSize = NBD_MAX_BUFFER_SIZE
    this.bitmaps = bitmaps
    this.offer = { allocationDepth: options.allocationDepth ?? false, bitmaps: bitmaps.map((b) => b.name) }
    this.discard = options.discard ?? 'ignore'
    this.detectZeroes = options.detectZeroes ?? 'off'
    this.writethrough = options.writethrough ?? false
  }

  /** Sets up an export with qemu-nbd's checks and messages. */
  static async create(device: BlockDevice, options: ExportOptions = {}): Promise<NbdExport> {
    const name = options.name ?? ''
    if (encodeString(name).length > NBD_MAX_STRING_SIZE) throw new ImageError('INVALID_ARGUMENT', `export name '${name}' too long`)
    if (options.description !== undefined && encodeString(options.description).length > NBD_MAX_STRING_SIZE) {
      throw new ImageError('INVALID_ARGUMENT', `export description '${options.description}' too long`)
    }
    if (options.readOnly === false && !device.writable) throw new ImageError('READ_ONLY', `${device.driver.storage.name}: image is open read-only`)
    if (options.detectZeroes === 'unmap' && options.discard !== 'unmap') {
      throw new ImageError('INVALID_ARGUMENT', 'setting detect-zeroes to unmap is not allowed without setting discard operation to unmap')
    }
    // Encrypted formats work in 512-byte sectors (block_crypto_refresh_limits, qcow2_refresh_limits).
    const info = await device.info()
    const requestAlignment = info.encrypted === true || device.driver.format === 'luks' ? 512 : 1
    const bitmaps: PersistentBitmap[] = []
    for (const bitmapName of options.bitmaps ?? []) bitmaps.push(await findBitmap(device, bitmapName))
    return new NbdExport(device, options, requestAlignment, bitmaps)
  }
}

/** A bitmap by name in the top layer or, failing that, down the chain (as QEMU looks it up). */
async function findBitmap(device: BlockDevice, name: string): Promise<PersistentBitmap> {
  for (const layer of device.chain) {
    if (!canReadBitmaps(layer.driver)) continue
    const found = (await layer.driver.readBitmaps()).find((b) => b.name === name)
    if (!found) continue
    if (found.inconsistent) throw new ImageError('INVALID_ARGUMENT', `Bitmap '${name}' is inconsistent and cannot be used`)
    return found
  }
  throw new ImageError('INVALID_ARGUMENT', `Bitmap '${name}' is not found`)
}
