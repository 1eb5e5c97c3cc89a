// The NBD server on Node sockets: listens on a unix socket or TCP, runs the handshake and the
// transmission phase of src/nbd on every connection, all of them on the same exports (one
// open device, so every client sees every other's writes at once: multi-conn is safe).
// Connection policy as qemu-nbd 7.2's (qemu-nbd.c nbd_accept, nbd_client_closed): at most
// `maxConnections` clients served at once (0: any number), further ones wait unanswered; a
// handshake not done in 10 seconds is cut; without `persistent`, the server ends when the last
// client that reached transmission leaves.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { lstat, unlink } from 'node:fs/promises'
import { NbdConnection, type ConnectionOptions } from '../nbd/connection.js'
import { NBD_DEFAULT_HANDSHAKE_MAX_SECS } from '../nbd/constants.js'
import type { NbdExport } from '../nbd/export.js'
import { negotiate } from '../nbd/negotiate.js'
import { SocketChannel } from './nbd-channel.js'

export interface NbdServerOptions extends ConnectionOptions {
  /** -e: clients served at once; 0 for no limit. Default 1, as qemu-nbd. */
  maxConnections?: number
  /** -t: keep serving after the last client leaves. */
  persistent?: boolean
  handshakeTimeoutMs?: number
  /** Connections waiting for a free slot beyond which new ones are refused (a listen backlog). */
  waitingLimit?: number
  /** Makes a TLS socket of an accepted one for NBD_OPT_STARTTLS; TLS is then required. */
  startTls?: (socket: Socket) => Promise<Socket>
}

export type ListenAddress = { path: string } | { host?: string; port: number }

/** Where the server listens, once it does. */
export type BoundAddress = { path: string } | { host: string; port: number }

export class NbdServer {
  readonly exports: readonly NbdExport[]
  readonly #options: NbdServerOptions
  readonly #server: Server
  readonly #active = new Set<Socket>()
  readonly #connections = new Set<NbdConnection>()
  readonly #waiting: Socket[] = []
  #stopping = false
  #path: string | undefined
  #done!: () => void
  /** Resolves when the server has stopped (after {@link close}, or the last client of a non-persistent one). */
  readonly finished: Promise<void>

  constructor(exports: readonly NbdExport[], options: NbdServerOptions = {}) {
    this.exports = exports
    this.#options = options
    this.finished = new Promise((resolve) => { this.#done = resolve })
    this.#server = createServer({ noDelay: true }, (socket) => this.#accept(socket))
  }

  /** Starts listening; resolves to the bound address (port 0 picks a free port). */
  async listen(address: ListenAddress): Promise<BoundAddress> {
    // unix_listen_saddr: a socket file left by a server that died is removed before binding.
    if ('path' in address) await removeStaleSocket(address.path)
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      const done = () => {
        this.#server.off('error', reject)
        resolve()
      }
      if ('path' in address) this.#server.listen(address.path, done)
      else this.#server.listen(address.port, address.host, done)
    })
    if ('path' in address) {
      this.#path = address.path
      return { path: address.path }
    }
    const info = this.#server.address() as AddressInfo
    return { host: info.address, port: info.port }
  }

  /** Clients connected now (negotiating or transmitting). */
  get connectionCount(): number {
    return this.#active.size
  }

  #accept(socket: Socket): void {
    if (this.#stopping) return void socket.destroy()
    const limit = this.#options.maxConnections ?? 1
    if (limit !== 0 && this.#active.size >= limit) {
      if (this.#waiting.length >= (this.#options.waitingLimit ?? 128)) return void socket.destroy()
      this.#waiting.push(socket)
      socket.once('close', () => {
        const i = this.#waiting.indexOf(socket)
        if (i >= 0) this.#waiting.splice(i, 1)
      })
      return
    }
    this.#active.add(socket)
    void this.#serve(socket)
  }

  async #serve(socket: Socket): Promise<void> {
    const log = this.#options.log ?? (() => undefined)
    const channel = new SocketChannel(socket, false, this.#options.startTls)
    let negotiated = false
    const timer = setTimeout(() => channel.close(), this.#options.handshakeTimeoutMs ?? NBD_DEFAULT_HANDSHAKE_MAX_SECS * 1000)
    try {
      const session = await negotiate(channel, { exports: this.exports, tlsRequired: this.#options.startTls !== undefined })
      clearTimeout(timer)
      if (session && !this.#stopping) {
        negotiated = true
        const connection = new NbdConnection(session, this.#options)
        this.#connections.add(connection)
        try {
          await connection.serve()
        } finally {
          this.#connections.delete(connection)
        }
      } else {
        session?.channel.close()
      }
    } catch (e) {
      log(`option negotiation failed: ${(e as Error).message}`)
    } finally {
      clearTimeout(timer)
      channel.close()
      this.#closed(socket, negotiated)
    }
  }

  /** nbd_client_closed: frees a slot; the last negotiated client of a non-persistent server ends it. */
  #closed(socket: Socket, negotiated: boolean): void {
    this.#active.delete(socket)
    if (negotiated && this.#active.size === 0 && !this.#options.persistent && !this.#stopping) {
      void this.close()
      return
    }
    const next = this.#waiting.shift()
    if (next && !this.#stopping) {
      this.#active.add(next)
      void this.#serve(next)
    }
  }

  /**
   * Stops: no new connections, requests in flight finish and are answered, then every
   * connection closes. The exports' devices stay open (their owner flushes and closes them).
   */
  async close(): Promise<void> {
    if (this.#stopping) return this.finished
    this.#stopping = true
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const socket of this.#waiting.splice(0)) socket.destroy()
    await Promise.allSettled([...this.#connections].map((c) => c.stop()))
    for (const socket of this.#active) socket.destroy()
    await closed
    if (this.#path !== undefined) await unlink(this.#path).catch(() => undefined)
    this.#done()
    return this.finished
  }
}

/** Unlinks `path` when it is a socket (QEMU unlinks whatever is there; a regular file is kept here). */
async function removeStaleSocket(path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined)
  if (info?.isSocket()) await unlink(path)
}
