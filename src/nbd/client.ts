// The client side of NBD over a channel (as QEMU's block/nbd.c and nbd/client.c negotiate it):
// fixed newstyle, structured replies, base:allocation, OPT_GO with block sizes; then requests
// issued concurrently, matched to replies by handle, reads reassembled from data and hole
// chunks. Every length the server sends is checked against the request before it is read.
import { viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { dropBytes, readExact, type NbdChannel } from './channel.js'
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT,
  NBD_MAX_BUFFER_SIZE, NBD_MAX_STRING_SIZE, NBD_OPT_ABORT, NBD_OPT_GO, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK,
  NBD_REP_INFO, NBD_REP_META_CONTEXT, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE, NBD_STRUCTURED_REPLY_SIZE,
} from './constants.js'
import {
  GREETING_SIZE, OPTION_REPLY_HEADER_SIZE, decodeGreeting, decodeOptionReplyHeader, decodeString, encodeGoPayload, encodeMetaPayload,
  encodeOption,
} from './handshake.js'
import { BASE_ALLOCATION } from './meta-context.js'
import {
  decodeBlockStatus, decodeError, decodeOffset, decodeOffsetHole, decodeReplyStart, encodeRequest, isStructuredMagic, type StatusExtent,
} from './transmission.js'

/** Option replies longer than this are refused (a server cannot need more). */
const MAX_OPTION_REPLY = NBD_MAX_STRING_SIZE + 64

function protocolError(message: string): ImageError {
  return new ImageError('IO', `NBD: ${message}`)
}

/** What OPT_GO told about the export. */
export interface ExportInfo {
  size: number
  transmissionFlags: number
  minimumBlockSize: number
  preferredBlockSize: number
  maximumBlockSize: number
  /** Context id of base:allocation when the server agreed to it. */
  baseAllocationId: number | undefined
}

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

/** Handshake as a client; the export's facts, or an error with the server's message. */
async function handshake(channel: NbdChannel, exportName: string): Promise<{ info: ExportInfo; structured: boolean }> {
  const greeting = decodeGreeting(await readExact(channel, GREETING_SIZE, 'greeting'))
  if (!greeting) throw protocolError('the server does not speak newstyle NBD')
  if (!(greeting.handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE)) throw protocolError('the server does not support fixed newstyle')
  const flags = new Uint8Array(4)
  viewOf(flags).setUint32(0, NBD_FLAG_C_FIXED_NEWSTYLE | (greeting.handshakeFlags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0))
  await channel.write([flags])
  const option = async (opt: number, payload: Uint8Array, each: (type: number, data: Uint8Array) => void): Promise<number> => {
    await channel.write([encodeOption(opt, payload)])
    for (;;) {
      const header = decodeOptionReplyHeader(await readExact(channel, OPTION_REPLY_HEADER_SIZE, 'option reply'))
      if (!header.magicOk || header.option !== opt) throw protocolError('bad option reply')
      if (header.length > MAX_OPTION_REPLY) throw protocolError(`option reply of ${header.length} bytes`)
      const data = await readExact(channel, header.length, 'option reply')
      if (header.type === NBD_REP_ACK || header.type >= 0x8000_0000) {
        if (header.type >= 0x8000_0000) each(header.type, data)
        return header.type
      }
      each(header.type, data)
    }
  }
  const structured = (await option(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(0), () => undefined)) === NBD_REP_ACK
  let baseAllocationId: number | undefined
  if (structured) {
    await option(NBD_OPT_SET_META_CONTEXT, encodeMetaPayload(exportName, [BASE_ALLOCATION]), (type, data) => {
      if (type === NBD_REP_META_CONTEXT && data.length >= 4 && decodeString(data.subarray(4)) === BASE_ALLOCATION) baseAllocationId = viewOf(data).getUint32(0)
    })
  }
  const info: ExportInfo = { size: -1, transmissionFlags: 0, minimumBlockSize: 1, preferredBlockSize: 4096, maximumBlockSize: NBD_MAX_BUFFER_SIZE, baseAllocationId }
  let failure: string | undefined
  const result = await option(NBD_OPT_GO, encodeGoPayload(exportName, [NBD_INFO_BLOCK_SIZE]), (type, data) => {
    if (type >= 0x8000_0000) failure = decodeString(data)
    if (type !== NBD_REP_INFO || data.length < 2) return
    const view = viewOf(data)
    const infoType = view.getUint16(0)
    if (infoType === NBD_INFO_EXPORT && data.length >= 12) {
      info.size = view.getUint32(2) * 0x1_0000_0000 + view.getUint32(6)
      info.transmissionFlags = view.getUint16(10)
    } else if (infoType === NBD_INFO_BLOCK_SIZE && data.length >= 14) {
      info.minimumBlockSize = view.getUint32(2)
      info.preferredBlockSize = view.getUint32(6)
      info.maximumBlockSize = Math.min(view.getUint32(10), NBD_MAX_BUFFER_SIZE)
    }
  })
  if (result !== NBD_REP_ACK) throw new ImageError('IO', `Requested export not available${failure ? `\nserver reported: ${failure}` : ''}`)
  if (!Number.isSafeInteger(info.size) || info.size < 0) throw protocolError('no export size in the reply to OPT_GO')
  return { info, structured }
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
  static async connect(channel: NbdChannel, exportName: string): Promise<NbdClient> {
    try {
      const { info, structured } = await handshake(channel, exportName)
      return new NbdClient(channel, info, structured)
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
