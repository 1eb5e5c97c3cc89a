// A raw NBD client for tests: a socket spoken to byte by byte, through the same channel the
// server uses, with helpers for the handshake steps tests repeat.
import { connect } from 'node:net'
import { viewOf } from '../../src/binary/bytes.js'
import {
  NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_OPT_GO, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK,
  NBD_REP_INFO, NBD_INFO_EXPORT, NBD_STRUCTURED_REPLY_SIZE,
} from '../../src/nbd/constants.js'
import {
  GREETING_SIZE, OPTION_REPLY_HEADER_SIZE, decodeGreeting, decodeOptionReplyHeader, encodeGoPayload, encodeMetaPayload, encodeOption,
  type OptionReplyHeader,
} from '../../src/nbd/handshake.js'
import { decodeReplyStart, isStructuredMagic, type ReplyHeader } from '../../src/nbd/transmission.js'
import { SocketChannel } from '../../src/node/nbd-channel.js'

export class WireClient {
  constructor(readonly channel: SocketChannel) {}

  static async connect(path: string): Promise<WireClient> {
    const socket = connect(path)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new WireClient(new SocketChannel(socket))
  }

  async send(...parts: Uint8Array[]): Promise<void> {
    await this.channel.write(parts)
  }

  /** Exactly `n` bytes, or undefined at the end of the stream (also when it ends early). */
  async read(n: number): Promise<Uint8Array | undefined> {
    const bytes = await this.channel.read(n).catch(() => undefined)
    return bytes && new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
  }

  /** Resolves true once the server has closed the connection (reading and dropping what comes). */
  async closedByServer(): Promise<boolean> {
    for (;;) if ((await this.read(1)) === undefined) return true
  }

  async greeting(flags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const bytes = await this.read(GREETING_SIZE)
    if (!bytes) throw new Error('no greeting')
    const g = decodeGreeting(bytes)
    if (!g) throw new Error('bad greeting')
    const out = new Uint8Array(4)
    viewOf(out).setUint32(0, flags)
    await this.send(out)
    return g.handshakeFlags
  }

  /** One option reply: its header and payload. */
  async optionReply(): Promise<{ header: OptionReplyHeader; payload: Uint8Array }> {
    const h = await this.read(OPTION_REPLY_HEADER_SIZE)
    if (!h) throw new Error('connection closed before an option reply')
    const header = decodeOptionReplyHeader(h)
    const payload = header.length ? await this.read(header.length) : new Uint8Array(0)
    if (!payload) throw new Error('connection closed in an option reply')
    return { header, payload }
  }

  /** Sends an option and collects replies up to the final one (ACK or an error). */
  async option(option: number, payload?: Uint8Array): Promise<{ header: OptionReplyHeader; payload: Uint8Array }[]> {
    await this.send(encodeOption(option, payload))
    const replies = []
    for (;;) {
      const r = await this.optionReply()
      replies.push(r)
      if (r.header.type === NBD_REP_ACK || r.header.type >= 0x8000_0000) return replies
    }
  }

  /** Full handshake to transmission: structured replies, contexts, OPT_GO; the export's size and flags. */
  async open(name = '', contexts: string[] = ['base:allocation'], structured = true): Promise<{ size: number; flags: number }> {
    await this.greeting()
    if (structured) await this.option(NBD_OPT_STRUCTURED_REPLY)
    if (structured && contexts.length) await this.option(NBD_OPT_SET_META_CONTEXT, encodeMetaPayload(name, contexts))
    const replies = await this.option(NBD_OPT_GO, encodeGoPayload(name, []))
    const last = replies[replies.length - 1]!
    if (last.header.type !== NBD_REP_ACK) throw new Error(`OPT_GO failed: ${new TextDecoder().decode(last.payload)}`)
    const info = replies.find((r) => r.header.type === NBD_REP_INFO && viewOf(r.payload).getUint16(0) === NBD_INFO_EXPORT)!
    const view = viewOf(info.payload)
    return { size: view.getUint32(2) * 2 ** 32 + view.getUint32(6), flags: view.getUint16(10) }
  }

  /** One reply: a simple header, or a structured chunk with its payload. */
  async reply(): Promise<{ header: ReplyHeader; payload: Uint8Array } | undefined> {
    const start = await this.read(16)
    if (!start) return undefined
    let bytes = start
    if (isStructuredMagic(start)) {
      const rest = await this.read(NBD_STRUCTURED_REPLY_SIZE - 16)
      if (!rest) return undefined
      bytes = new Uint8Array([...start, ...rest])
    }
    const header = decodeReplyStart(bytes)
    if (header.kind === 'structured' && header.length > 0) {
      const payload = await this.read(header.length)
      if (!payload) return undefined
      return { header, payload }
    }
    return { header, payload: new Uint8Array(0) }
  }

  close(): void {
    this.channel.close()
  }
}

/** An 8-byte handle from a number. */
export function handleOf(n: number): Uint8Array {
  const h = new Uint8Array(8)
  viewOf(h).setUint32(4, n)
  return h
}

export function handleNumber(h: Uint8Array): number {
  return viewOf(h).getUint32(4)
}
