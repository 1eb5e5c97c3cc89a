// The client's side of the NBD handshake (QEMU's nbd/client.c nbd_receive_negotiate): fixed
// newstyle, STARTTLS first when TLS is wanted, structured replies, base:allocation, OPT_GO with
// block sizes. Error replies read as QEMU words them (nbd_handle_reply_err), server's message
// appended; options a client can do without (structured replies, meta contexts) are not fatal.
import { viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { readExact, type NbdChannel } from './channel.js'
import {
  NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT,
  NBD_MAX_BUFFER_SIZE, NBD_MAX_STRING_SIZE, NBD_OPT_GO, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK,
  NBD_REP_ERR_BLOCK_SIZE_REQD, NBD_REP_ERR_INVALID, NBD_REP_ERR_PLATFORM, NBD_REP_ERR_POLICY, NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT, optionName,
} from './constants.js'
import {
  GREETING_SIZE, OPTION_REPLY_HEADER_SIZE, decodeGreeting, decodeOptionReplyHeader, decodeString, encodeGoPayload, encodeMetaPayload,
  encodeOption,
} from './handshake.js'
import { BASE_ALLOCATION } from './meta-context.js'

/** Option replies longer than this are refused (a server cannot need more: NBD_REP_SERVER holds a name and a description). */
const MAX_OPTION_REPLY = 2 * NBD_MAX_STRING_SIZE + 64

export function protocolError(message: string): ImageError {
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

export interface ClientHandshakeOptions {
  /** Start TLS before anything else (the channel must offer startTls). */
  tls?: boolean
}

/** nbd_handle_reply_err's text for an error reply to `option`. */
function replyErrorText(option: number, type: number, message: string): string {
  const o = `option ${option} (${optionName(option)})`
  let text: string
  switch (type) {
    case NBD_REP_ERR_POLICY: text = `Denied by server for ${o}`; break
    case NBD_REP_ERR_INVALID: text = `Invalid parameters for ${o}`; break
    case NBD_REP_ERR_PLATFORM: text = `Server lacks support for ${o}`; break
    case NBD_REP_ERR_TLS_REQD: text = `TLS negotiation required before ${o}\nDid you forget a valid tls-creds?`; break
    case NBD_REP_ERR_UNKNOWN: text = 'Requested export not available'; break
    case NBD_REP_ERR_SHUTDOWN: text = `Server shutting down before ${o}`; break
    case NBD_REP_ERR_BLOCK_SIZE_REQD: text = `Server requires INFO_BLOCK_SIZE for ${o}`; break
    default: text = `Unknown error code when asking for ${o}`
  }
  return message ? `${text}\nserver reported: ${message}` : text
}

/** One option exchange on a channel: replies to `each`, and the final reply's type. */
export class OptionTalk {
  channel: NbdChannel
  constructor(channel: NbdChannel) {
    this.channel = channel
  }

  /**
   * Sends `opt` and reads its replies until ACK or an error. An error reply throws QEMU's
   * message when `strict`; else, and for NBD_REP_ERR_UNSUP always, its type is returned
   * (nbd_handle_reply_err: the client falls back to something else).
   */
  async option(opt: number, payload: Uint8Array, each: (type: number, data: Uint8Array) => void, strict: boolean): Promise<number> {
    await this.channel.write([encodeOption(opt, payload)])
    for (;;) {
      const header = decodeOptionReplyHeader(await readExact(this.channel, OPTION_REPLY_HEADER_SIZE, 'option reply'))
      if (!header.magicOk || header.option !== opt) throw protocolError('bad option reply')
      if (header.length > MAX_OPTION_REPLY) throw protocolError(`option reply of ${header.length} bytes`)
      const data = await readExact(this.channel, header.length, 'option reply')
      if (header.type >= 0x8000_0000) {
        if (strict && header.type !== NBD_REP_ERR_UNSUP) throw new ImageError('IO', replyErrorText(opt, header.type, decodeString(data)))
        return header.type
      }
      if (header.type === NBD_REP_ACK) return header.type
      each(header.type, data)
    }
  }
}

/** Greeting and client flags, then STARTTLS when asked for: the talk the options go on. */
export async function openHandshake(channel: NbdChannel, options: ClientHandshakeOptions): Promise<OptionTalk> {
  const greeting = decodeGreeting(await readExact(channel, GREETING_SIZE, 'greeting'))
  if (!greeting) throw protocolError('the server does not speak newstyle NBD')
  if (!(greeting.handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE)) throw protocolError('the server does not support fixed newstyle')
  const flags = new Uint8Array(4)
  viewOf(flags).setUint32(0, NBD_FLAG_C_FIXED_NEWSTYLE | (greeting.handshakeFlags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0))
  await channel.write([flags])
  const talk = new OptionTalk(channel)
  if (options.tls) {
    if (!channel.startTls) throw new ImageError('INVALID_ARGUMENT', 'TLS is not available on this connection')
    // nbd_receive_starttls: an ACK, then the TLS handshake on the same stream.
    const reply = await talk.option(NBD_OPT_STARTTLS, new Uint8Array(0), () => { throw protocolError('unexpected reply to STARTTLS') }, true)
    if (reply === NBD_REP_ERR_UNSUP) throw new ImageError('IO', "Server don't support STARTTLS option")
    talk.channel = await channel.startTls()
  }
  return talk
}

/** Handshake as a client; the export's facts, or an error with the server's message. */
export async function clientHandshake(channel: NbdChannel, exportName: string, options: ClientHandshakeOptions = {}): Promise<{ info: ExportInfo; structured: boolean; channel: NbdChannel }> {
  const talk = await openHandshake(channel, options)
  const structured = (await talk.option(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(0), () => undefined, false)) === NBD_REP_ACK
  let baseAllocationId: number | undefined
  if (structured) {
    await talk.option(NBD_OPT_SET_META_CONTEXT, encodeMetaPayload(exportName, [BASE_ALLOCATION]), (type, data) => {
      if (type === NBD_REP_META_CONTEXT && data.length >= 4 && decodeString(data.subarray(4)) === BASE_ALLOCATION) baseAllocationId = viewOf(data).getUint32(0)
    }, false)
  }
  const info = await goInfo(talk, exportName)
  info.baseAllocationId = baseAllocationId
  return { info, structured, channel: talk.channel }
}

/** What NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE replies say, as sent (block sizes 0 when not sent). */
export interface InfoFacts {
  size: number
  transmissionFlags: number
  minimumBlockSize: number
  preferredBlockSize: number
  maximumBlockSize: number
}

/** Folds one NBD_REP_INFO reply of OPT_INFO / OPT_GO into `facts`; other info types are skipped. */
export function takeInfoReply(facts: InfoFacts, type: number, data: Uint8Array): void {
  if (type !== NBD_REP_INFO || data.length < 2) return
  const view = viewOf(data)
  const infoType = view.getUint16(0)
  if (infoType === NBD_INFO_EXPORT && data.length >= 12) {
    facts.size = view.getUint32(2) * 0x1_0000_0000 + view.getUint32(6)
    facts.transmissionFlags = view.getUint16(10)
  } else if (infoType === NBD_INFO_BLOCK_SIZE && data.length >= 14) {
    facts.minimumBlockSize = view.getUint32(2)
    facts.preferredBlockSize = view.getUint32(6)
    facts.maximumBlockSize = view.getUint32(10)
  }
}

/** NBD_OPT_GO with NBD_INFO_BLOCK_SIZE: what the server tells of the export. */
async function goInfo(talk: OptionTalk, exportName: string): Promise<ExportInfo> {
  const facts: InfoFacts = { size: -1, transmissionFlags: 0, minimumBlockSize: 0, preferredBlockSize: 0, maximumBlockSize: 0 }
  await talk.option(NBD_OPT_GO, encodeGoPayload(exportName, [NBD_INFO_BLOCK_SIZE]), (type, data) => takeInfoReply(facts, type, data), true)
  if (!Number.isSafeInteger(facts.size) || facts.size < 0) throw protocolError('no export size in the reply to OPT_GO')
  // Without NBD_INFO_BLOCK_SIZE: any alignment, 4 KiB preferred, QEMU's 32 MiB cap.
  const sized = facts.minimumBlockSize !== 0
  return {
    size: facts.size,
    transmissionFlags: facts.transmissionFlags,
    minimumBlockSize: sized ? facts.minimumBlockSize : 1,
    preferredBlockSize: sized ? facts.preferredBlockSize : 4096,
    maximumBlockSize: sized ? Math.min(facts.maximumBlockSize, NBD_MAX_BUFFER_SIZE) : NBD_MAX_BUFFER_SIZE,
    baseAllocationId: undefined,
  }
}
