// The client side of NBD over a channel (as QEMU's block/nbd.c and nbd/client.c negotiate it):
// the handshake of client-handshake.ts (TLS, structured replies, base:allocation); then requests
// issued concurrently, matched to replies by handle, reads reassembled from data and hole
// chunks. Every length the server sends is checked against the request before it is read.
import { viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { dropBytes, readExact, type NbdChannel } from './channel.js'
import { clientHandshake, protocolError, type ClientHandshakeOptions, type ExportInfo } from './client-handshake.js'
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_MAX_BUFFER_SIZE,
  NBD_OPT_ABORT, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_STRUCTURED_REPLY_SIZE,
} from './constants.js'
import { decodeString, encodeOption } from './handshake.js'
import {
  decodeBlockStatus, decodeError, decodeOffset, decodeOffsetHole, decodeReplyStart, encodeRequest, isStructuredMagic, type StatusExtent,
} from './transmission.js'

export type { ExportInfo } from './client-handshake.js'

interface Pending {
  type: number
  offset: number
  length: number
  /** READ: the buffer the chunks fill. */
  buffer?: Uint8Array
  extents?: StatusExtent[]
  error?: ImageError
  resolve: () => void
  reject: (e: unknown) => void
}

/** One connection to one export; requests may be issued concurrently. */
export class NbdClient {
  readonly info: ExportInfo
  readonly structured: boolean
  readonly #channel: NbdChannel
  readonly #pending = new Map<number, Pending>()
  #nextHandle = 1
  #broken: ImageError | undefined

  private constructor(channel: NbdChannel, info: ExportInfo, structured: boolean) {
    this.#channel = channel
    this.info = info
    this.structured = structured
    void this.#receive()
  }

  /** Negotiates `exportName` on `channel` (an error reply ends the handshake with OPT_ABORT). */
  static async connect(channel: NbdChannel, exportName: string, options: ClientHandshakeOptions = {}): Promise<NbdClient> {
    try {
      const negotiated = await clientHandshake(channel, exportName, options)
      return new NbdClient(negotiated.channel, negotiated.info, negotiated.structured)
    } catch (e) {
      await channel.write([encodeOption(NBD_OPT_ABORT)]).catch(() => undefined)
      channel.close()
      throw e
    }
  }

  async #receive(): Promise<void> {
    try {
      for (;;) {
        const start = await this.#channel.read(16)
        if (!start) throw protocolError('the server closed the connection')
        const bytes = isStructuredMagic(start) ? new Uint8Array([...start, ...await readExact(this.#channel, NBD_STRUCTURED_REPLY_SIZE - 16, 'reply')]) : start
        const header = decodeReplyStart(bytes)
        if (header.kind === 'bad') throw protocolError(`reply magic 0x${header.magic.toString(16)}`)
        const handle = viewOf(header.handle).getUint32(4)
        const pending = this.#pending.get(handle)
        if (!pending) throw protocolError(`reply to unknown handle ${handle}`)
        if (header.kind === 'simple') {
          if (header.error) pending.error = new ImageError('IO', `NBD server error ${header.error}`)
          else if (pending.type === NBD_CMD_READ) await this.#channel.read(pending.length).then((d) => { if (!d) throw protocolError('short read reply'); pending.buffer!.set(d) })
          this.#finish(handle, pending)
          continue
        }
        await this.#chunk(pending, header.type, header.length)
        if (header.flags & NBD_REPLY_FLAG_DONE) this.#finish(handle, pending)
      }
    } catch (e) {
      this.#broken = e instanceof ImageError ? e : protocolError((e as Error).message)
      for (const p of this.#pending.values()) p.reject(this.#broken)
      this.#pending.clear()
      this.#channel.close()
    }
  }

  /** One structured chunk of `pending`'s reply, checked against the request. */
  async #chunk(pending: Pending, type: number, length: number): Promise<void> {
    if (type === NBD_REPLY_TYPE_NONE) return
    if (type === NBD_REPLY_TYPE_OFFSET_DATA && pending.type === NBD_CMD_READ && length >= 8 && length - 8 <= pending.length) {
      const offset = decodeOffset(await readExact(this.#channel, 8, 'reply'))
      const at = offset - pending.offset
      if (at < 0 || at + length - 8 > pending.length) throw protocolError('data chunk outside the request')
      pending.buffer!.set(await readExact(this.#channel, length - 8, 'reply'), at)
      return
    }
    if (type === NBD_REPLY_TYPE_OFFSET_HOLE && pending.type === NBD_CMD_READ && length === 12) {
      const hole = decodeOffsetHole(await readExact(this.#channel, 12, 'reply'))
      const at = hole.offset - pending.offset
      if (at < 0 || at + hole.length > pending.length) throw protocolError('hole chunk outside the request')
      pending.buffer!.fill(0, at, at + hole.length)
      return
    }
    if (type === NBD_REPLY_TYPE_BLOCK_STATUS && pending.type === NBD_CMD_BLOCK_STATUS && length >= 12 && length <= 4 + 8 * 131072) {
      const status = decodeBlockStatus(await readExact(this.#channel, length, 'reply'))
      if (status.contextId === this.info.baseAllocationId) pending.extents = status.extents
      return
    }
    if (type & 0x8000 && length >= 6 && length <= 6 + 65535 + 8) {
      const error = decodeError(await readExact(this.#channel, length, 'reply'))
      pending.error = new ImageError('IO', `NBD server error ${error.error}: ${decodeString(error.message)}`)
      return
    }
    if (length > NBD_MAX_BUFFER_SIZE + 8) throw protocolError(`chunk of type ${type} with ${length} bytes`)
    await dropBytes(this.#channel, length, 'reply')
  }

  #finish(handle: number, pending: Pending): void {
    this.#pending.delete(handle)
    if (pending.error) pending.reject(pending.error)
    else pending.resolve()
  }

  async #request(type: number, flags: number, offset: number, length: number, fill: Partial<Pending> = {}, payload?: Uint8Array): Promise<Pending> {
    if (this.#broken) throw this.#broken
    const handle = this.#nextHandle++ >>> 0
    const h = new Uint8Array(8)
    viewOf(h).setUint32(4, handle)
    const done = new Promise<Pending>((resolve, reject) => {
      const pending: Pending = { type, offset, length, ...fill, resolve: () => resolve(pending), reject }
      this.#pending.set(handle, pending)
    })
    await this.#channel.write(payload ? [encodeRequest(type, flags, h, offset, length), payload] : [encodeRequest(type, flags, h, offset, length)])
    return done
  }

  /** Splits a range into requests of at most the server's maximum block size. */
  async #pieces(offset: number, length: number, run: (at: number, n: number) => Promise<void>): Promise<void> {
    const max = this.info.maximumBlockSize
    const work: Promise<void>[] = []
    for (let at = 0; at < length; at += max) work.push(run(offset + at, Math.min(max, length - at)))
    await Promise.all(work)
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    await this.#pieces(offset, target.length, (at, n) => this.#request(NBD_CMD_READ, 0, at, n, { buffer: target.subarray(at - offset, at - offset + n) }).then(() => undefined))
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#pieces(offset, data.length, (at, n) => this.#request(NBD_CMD_WRITE, 0, at, n, {}, data.subarray(at - offset, at - offset + n)).then(() => undefined))
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    for (let at = 0; at < length; at += 0x8000_0000) await this.#request(NBD_CMD_WRITE_ZEROES, 0, offset + at, Math.min(0x8000_0000, length - at))
  }

  async trim(offset: number, length: number): Promise<void> {
    for (let at = 0; at < length; at += 0x8000_0000) await this.#request(NBD_CMD_TRIM, 0, offset + at, Math.min(0x8000_0000, length - at))
  }

  async flush(): Promise<void> {
    await this.#request(NBD_CMD_FLUSH, 0, 0, 0)
  }

  /** base:allocation extents from `offset` (at most `length` bytes); undefined without the context. */
  async blockStatus(offset: number, length: number): Promise<StatusExtent[] | undefined> {
    if (this.info.baseAllocationId === undefined) return undefined
    const pending = await this.#request(NBD_CMD_BLOCK_STATUS, 0, offset, Math.min(length, 0xffff_f000))
    return pending.extents
  }

  /** NBD_CMD_DISC after every reply is in, then the channel closes. */
  async close(): Promise<void> {
    if (!this.#broken) {
      await Promise.allSettled([...this.#pending.values()].map((p) => new Promise<void>((resolve) => {
        const { resolve: r, reject: j } = p
        p.resolve = () => { r(); resolve() }
        p.reject = (e) => { j(e); resolve() }
      })))
      await this.#channel.write([encodeRequest(NBD_CMD_DISC, 0, new Uint8Array(8), 0, 0)]).catch(() => undefined)
    }
    this.#broken ??= protocolError('connection closed')
    this.#channel.close()
  }
}
