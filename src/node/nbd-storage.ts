// An NBD export as storage (QEMU's nbd block driver): every format opens `nbd://HOST[:PORT]/NAME`
// and `nbd+unix:///NAME?socket=PATH` as it opens a file. Reads, writes, zero writes, discards
// and flushes go to the server; block status (base:allocation) tells where the holes are, so
// map and convert skip them.
import { connect, type Socket } from 'node:net'
import { ImageError } from '../errors.js'
import { errnoText, isErrnoName } from '../io/errno.js'
import type { Storage } from '../io/storage.js'
import { NbdClient } from '../nbd/client.js'
import { NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_STATE_ZERO } from '../nbd/constants.js'
import { SocketChannel } from './nbd-channel.js'

/** Where an NBD server is: a unix socket or a TCP host and port, and the export. */
export type NbdAddress = ({ type: 'unix'; path: string } | { type: 'inet'; host: string; port: number }) & { exportName: string }

/** The name QEMU gives such a node (nbd_refresh_filename). */
export function nbdFilename(a: NbdAddress): string {
  const name = a.exportName
  if (a.type === 'unix') return name ? `nbd+unix:///${name}?socket=${a.path}` : `nbd+unix://?socket=${a.path}`
  return name ? `nbd://${a.host}:${a.port}/${name}` : `nbd://${a.host}:${a.port}`
}

/** A connected socket to the server, or QEMU's message (qio_channel_socket_connect_sync) for why not. */
export async function connectNbdSocket(address: NbdAddress): Promise<Socket> {
  const socket = address.type === 'unix' ? connect(address.path) : connect(address.port, address.host)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', (e: NodeJS.ErrnoException) => {
      const why = e.code !== undefined && isErrnoName(e.code) ? errnoText(e.code) : e.message
      reject(new ImageError('IO', `Failed to connect to '${address.type === 'unix' ? address.path : `${address.host}:${address.port}`}': ${why}`, { cause: e }))
    })
  })
  socket.setNoDelay(true)
  return socket
}

export interface NbdStorageOptions {
  /** Fails on a read-only export when true. */
  writable?: boolean
  /** TLS before anything else (an nbd node's tls-creds): makes the TLS socket of the connection. */
  tls?: (socket: Socket) => Promise<Socket>
}

export class NbdStorage implements Storage {
  readonly name: string
  /** QEMU's nbd driver has no bdrv_get_info. */
  readonly hasInfo = false
  readonly #client: NbdClient
  readonly #writable: boolean

  private constructor(name: string, client: NbdClient, writable: boolean) {
    this.name = name
    this.#client = client
    this.#writable = writable
  }

  /** Connects and negotiates; `writable` fails on a read-only export. */
  static async open(address: NbdAddress, options: NbdStorageOptions = {}): Promise<NbdStorage> {
    const name = nbdFilename(address)
    const socket = await connectNbdSocket(address)
    const tls = options.tls
    const client = await NbdClient.connect(new SocketChannel(socket, false, tls), address.exportName, { tls: tls !== undefined })
    const writable = options.writable ?? false
    if (writable && client.info.transmissionFlags & NBD_FLAG_READ_ONLY) {
      await client.close()
      throw new ImageError('READ_ONLY', `${name}: the export is read-only`, { qemuText: 'Could not open: Read-only export' })
    }
    return new NbdStorage(name, client, writable)
  }

  async size(): Promise<number> {
    return this.#client.info.size
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length)
    await this.readInto(offset, out)
    return out
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    if (offset < 0 || offset + target.length > this.#client.info.size) {
      throw new ImageError('SHORT_READ', `${this.name}: read of ${target.length} bytes at ${offset} is past the end of the export (${this.#client.info.size} bytes)`)
    }
    if (target.length > 0) await this.#client.readInto(offset, target)
  }

  /** A hole is what base:allocation says reads as zeros. */
  async holeStatus(offset: number, length: number): Promise<{ hole: boolean; length: number }> {
    const extents = await this.#client.blockStatus(offset, length)
    const first = extents?.[0]
    if (!first || first.length === 0) return { hole: false, length }
    return { hole: (first.flags & NBD_STATE_ZERO) !== 0, length: Math.min(first.length, length) }
  }

  #checkWritable(): void {
    if (!this.#writable) throw new ImageError('READ_ONLY', `${this.name}: opened read-only`)
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkWritable()
    if (offset + data.length > this.#client.info.size) throw new ImageError('IO', `${this.name}: write past the end of the export`, { qemuText: 'Cannot grow NBD nodes' })
    if (data.length > 0) await this.#client.write(offset, data)
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkWritable()
    if (this.#client.info.transmissionFlags & NBD_FLAG_SEND_WRITE_ZEROES) await this.#client.writeZeroes(offset, length)
    else await this.write(offset, new Uint8Array(length))
  }

  async discard(offset: number, length: number): Promise<boolean> {
    this.#checkWritable()
    if (!(this.#client.info.transmissionFlags & NBD_FLAG_SEND_TRIM)) return false
    await this.#client.trim(offset, length)
    return false // the server may keep the bytes (TRIM is advisory): callers must not count on zeros
  }

  async flush(): Promise<void> {
    if (this.#writable) await this.#client.flush()
  }

  async truncate(length: number): Promise<void> {
    if (length !== this.#client.info.size) throw new ImageError('UNSUPPORTED', `${this.name}: an NBD export cannot be resized`, { qemuText: 'Cannot grow NBD nodes' })
  }

  async close(): Promise<void> {
    await this.#client.close()
  }
}
