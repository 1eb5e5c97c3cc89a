// An NBD channel over a Node stream socket (unix or TCP): exact reads from a bounded buffer
// (the socket is paused while enough is buffered, so a client that sends faster than requests
// are served is held back by TCP, not by memory), and writes corked into one writev.
import type { Socket } from 'node:net'
import { ImageError } from '../errors.js'
import type { NbdChannel } from '../nbd/channel.js'

/** Bytes buffered ahead of what is asked for before the socket is paused. */
const READ_AHEAD_BYTES = 256 * 1024

interface PendingRead {
  length: number
  resolve: (bytes: Uint8Array | undefined) => void
  reject: (e: unknown) => void
}

export class SocketChannel implements NbdChannel {
  readonly socket: Socket
  readonly secure: boolean
  #chunks: Uint8Array[] = []
  #buffered = 0
  #ended = false
  #failure: Error | undefined
  #pending: PendingRead | undefined
  #closed = false
  /** Writes are being gathered until the next turn of the event loop. */
  #corked = false

  /** Present when built with a TLS upgrade (NBD_OPT_STARTTLS, either side): the TLS channel. */
  readonly startTls?: () => Promise<NbdChannel>

  /** `upgrade`: turns the socket into a TLS one for {@link startTls}. */
  constructor(socket: Socket, secure = false, upgrade?: (socket: Socket) => Promise<Socket>) {
    this.socket = socket
    this.secure = secure
    if (upgrade) {
      this.startTls = async () => {
        this.detach()
        return new SocketChannel(await upgrade(socket), true)
      }
    }
    socket.on('data', (data: Buffer) => {
      this.#chunks.push(data)
      this.#buffered += data.length
      if (this.#buffered >= READ_AHEAD_BYTES + (this.#pending?.length ?? 0)) socket.pause()
      this.#serve()
    })
    socket.on('end', () => {
      this.#ended = true
      this.#serve()
    })
    socket.on('close', () => {
      this.#ended = true
      this.#closed = true
      this.#serve()
    })
    socket.on('error', (e) => {
      this.#failure = e
      this.#serve()
    })
  }

  /**
   * Stops reading the socket (for STARTTLS: the TLS layer takes it over). Bytes already
   * buffered would belong to the TLS handshake, which a client only starts after the reply: a
   * client that sent them early is refused.
   */
  detach(): void {
    this.socket.removeAllListeners('data')
    this.socket.removeAllListeners('end')
    this.socket.removeAllListeners('close')
    this.socket.removeAllListeners('error')
    if (this.#buffered > 0) throw new ImageError('IO', 'data before the TLS handshake')
  }

  read(length: number): Promise<Uint8Array | undefined> {
    if (this.#pending) return Promise.reject(new ImageError('IO', 'NBD channel: overlapping reads'))
    return new Promise((resolve, reject) => {
      this.#pending = { length, resolve, reject }
      this.#serve()
    })
  }

  readBuffered(length: number): Uint8Array | undefined {
    if (this.#pending || this.#buffered < length) return undefined
    return this.#takeAndRefill(length)
  }

  /** Completes the pending read when its bytes are here, or fails it at the end of the stream. */
  #serve(): void {
    const pending = this.#pending
    if (!pending) return
    if (this.#buffered >= pending.length) {
      this.#pending = undefined
      pending.resolve(this.#takeAndRefill(pending.length))
      return
    }
    if (this.#failure || this.#ended) {
      this.#pending = undefined
      if (this.#buffered === 0 && !this.#failure) pending.resolve(undefined)
      else pending.reject(new ImageError('IO', this.#failure ? `NBD channel: ${this.#failure.message}` : 'Unexpected end-of-file before all bytes were read', { cause: this.#failure }))
      return
    }
    this.socket.resume()
  }

  /** Takes `length` buffered bytes, resuming the socket once the read-ahead has room again. */
  #takeAndRefill(length: number): Uint8Array {
    const bytes = this.#take(length)
    if (this.#buffered < READ_AHEAD_BYTES && !this.#closed && this.socket.isPaused()) this.socket.resume()
    return bytes
  }

  #take(length: number): Uint8Array {
    const first = this.#chunks[0]
    if (first && first.length >= length) {
      const out = first.subarray(0, length)
      if (first.length === length) this.#chunks.shift()
      else this.#chunks[0] = first.subarray(length)
      this.#buffered -= length
      return out
    }
    const out = new Uint8Array(length)
    let at = 0
    while (at < length) {
      const chunk = this.#chunks[0]!
      const n = Math.min(chunk.length, length - at)
      out.set(chunk.subarray(0, n), at)
      at += n
      if (n === chunk.length) this.#chunks.shift()
      else this.#chunks[0] = chunk.subarray(n)
    }
    this.#buffered -= length
    return out
  }

  write(parts: readonly Uint8Array[]): Promise<void> {
    if (this.#closed || this.socket.destroyed) return Promise.reject(new ImageError('IO', 'NBD channel: connection closed'))
    return new Promise((resolve, reject) => {
      const socket = this.socket
      // Replies finished in the same turn of the event loop leave in one writev: a syscall per
      // reply was the server's largest cost at queue depth 16 (fio 4 KiB reads).
      if (!this.#corked) {
        this.#corked = true
        socket.cork()
        setImmediate(() => {
          this.#corked = false
          socket.uncork()
        })
      }
      for (let i = 0; i < parts.length - 1; i++) socket.write(parts[i]!)
      socket.write(parts[parts.length - 1]!, (e) => e ? reject(new ImageError('IO', `NBD channel: ${e.message}`, { cause: e })) : resolve())
    })
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    // Whatever was written goes out first (a reply before a hang-up), then the socket goes.
    ;(this.socket as Socket & { destroySoon(): void }).destroySoon()
    this.#serve()
  }
}
