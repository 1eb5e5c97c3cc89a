// The server side of the fixed newstyle handshake, as qemu-nbd 7.2 answers it (nbd/server.c
// nbd_negotiate, nbd_negotiate_options and the option handlers). Every length a client sends
// is checked against what is left of its option before anything is read or allocated; an
// option payload is read a field at a time, never whole.
import { viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { dropBytes, readExact, type NbdChannel } from './channel.js'
import {
  NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_SEND_DF, NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION, NBD_INFO_NAME,
  NBD_MAX_BUFFER_SIZE, NBD_MAX_STRING_SIZE, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK,
  NBD_REP_ERR_BLOCK_SIZE_REQD, NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY, NBD_REP_ERR_TLS_REQD, NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT, NBD_REP_SERVER, optionName,
} from './constants.js'
import type { NbdExport } from './export.js'
import {
  OPTION_HEADER_SIZE, decodeOptionHeader, decodeString, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize,
  encodeInfoExport, encodeInfoString, encodeMetaContextReply, encodeOptionReplyHeader, encodeServerReply, encodeString,
} from './handshake.js'
import { MetaSelector, type MetaSelection } from './meta-context.js'

/** What the server offers in the handshake. */
export interface NegotiationHost {
  exports: readonly NbdExport[]
  /** TLS is required: every option but STARTTLS is refused until the channel is secure. */
  tlsRequired?: boolean
}

/** A finished handshake: the export chosen and what was agreed. */
export interface Negotiated {
  channel: NbdChannel
  export: NbdExport
  structuredReply: boolean
  /** Contexts set for this export (none unless SET_META_CONTEXT named it). */
  meta: MetaSelection | undefined
  /** Alignment the client promised to honour (0: none). */
  checkAlignment: number
}

/** A handshake that ends the connection: the reason, as QEMU reports it. */
export class NegotiationFailed extends ImageError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message)
  }
}

/** An option the server answered NBD_REP_ERR_INVALID to, with the message: handled, not fatal. */
class InvalidOption extends Error {}

/** nbd_sanitize_name: names in error replies are cut at 80 characters. */
function sanitizeName(name: string): string {
  return name.length < 80 ? name : `${name.slice(0, 80)}...`
}

/** One option being handled: its payload left to read, and the replies to send. */
class OptionContext {
  remaining: number
  constructor(readonly channel: NbdChannel, readonly option: number, length: number) {
    this.remaining = length
  }

  /** nbd_opt_read: `size` bytes of the payload, refused when more than is left. */
  async read(size: number, checkNul = false): Promise<Uint8Array> {
    if (size > this.remaining) throw new InvalidOption(`Inconsistent lengths in option ${optionName(this.option)}`)
    this.remaining -= size
    const bytes = await readExact(this.channel, size, 'option')
    if (checkNul && bytes.includes(0)) throw new InvalidOption(`Unexpected embedded NUL in option ${optionName(this.option)}`)
    return bytes
  }

  async u32(): Promise<number> {
    return viewOf(await this.read(4)).getUint32(0)
  }

  async u16(): Promise<number> {
    return viewOf(await this.read(2)).getUint16(0)
  }

  /** nbd_opt_read_name: a length (at most NBD_MAX_STRING_SIZE) and the bytes. */
  async name(): Promise<Uint8Array> {
    const length = await this.u32()
    if (length > NBD_MAX_STRING_SIZE) throw new InvalidOption(`Invalid name length: ${length}`)
    return this.read(length, true)
  }

  /** nbd_opt_skip. */
  async skip(size: number): Promise<void> {
    if (size > this.remaining) throw new InvalidOption(`Inconsistent lengths in option ${optionName(this.option)}`)
    this.remaining -= size
    await dropBytes(this.channel, size, 'option')
  }

  /** Drops what is left of the payload (nbd_drop). */
  async dropRest(): Promise<void> {
    const left = this.remaining
    this.remaining = 0
    await dropBytes(this.channel, left, 'option')
  }

  async reply(type: number, payload?: Uint8Array): Promise<void> {
    const header = encodeOptionReplyHeader(this.option, type, payload?.length ?? 0)
    await this.channel.write(payload && payload.length > 0 ? [header, payload] : [header])
  }

  /** nbd_negotiate_send_rep_err: an error reply with its message. */
  async error(type: number, message: string): Promise<void> {
    await this.reply(type, encodeString(message))
  }

  /** nbd_opt_drop: the rest of the payload dropped, then an error reply. */
  async dropWithError(type: number, message: string): Promise<void> {
    await this.dropRest()
    await this.error(type, message)
  }
}

/** Runs the handshake on `channel`. Resolves undefined when the client aborted (NBD_OPT_ABORT). */
export async function negotiate(channel: NbdChannel, host: NegotiationHost): Promise<Negotiated | undefined> {
  await channel.write([encodeGreeting()])
  let clientFlags = viewOf(await readExact(channel, 4, 'flags')).getUint32(0)
  const fixedNewstyle = (clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0
  clientFlags &= ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)
  if (clientFlags !== 0) throw new NegotiationFailed(`Unknown client flags 0x${(clientFlags >>> 0).toString(16)} received`)
  const state: SessionState = { channel, structuredReply: false, meta: undefined, metaExport: undefined }
  for (;;) {
    const header = decodeOptionHeader(await readExact(state.channel, OPTION_HEADER_SIZE, 'opts magic'))
    if (!header.magicOk) throw new NegotiationFailed('Bad magic received')
    if (header.length > NBD_MAX_BUFFER_SIZE) throw new NegotiationFailed(`len (${header.length} ) is larger than max len (${NBD_MAX_BUFFER_SIZE})`)
    const ctx = new OptionContext(state.channel, header.option, header.length)
    try {
      const outcome = host.tlsRequired && !state.channel.secure
        ? await beforeTls(ctx, state, fixedNewstyle)
        : fixedNewstyle ? await fixedOption(ctx, state, host, noZeroes) : await oldOption(ctx, state, host, noZeroes)
      if (outcome === 'abort') return undefined
      if (outcome) return outcome
    } catch (e) {
      if (!(e instanceof InvalidOption)) throw e
      await ctx.dropWithError(NBD_REP_ERR_INVALID, e.message)
    }
  }
}

interface SessionState {
  channel: NbdChannel
  structuredReply: boolean
  meta: MetaSelection | undefined
  metaExport: NbdExport | undefined
}

type Outcome = Negotiated | 'abort' | undefined

function findExport(host: NegotiationHost, name: string): NbdExport | undefined {
  return host.exports.find((e) => e.name === name)
}

/** nbd_reject_length: an option that takes no payload came with one. */
async function rejectLength(ctx: OptionContext, fatal: boolean): Promise<void> {
  const message = `option '${optionName(ctx.option)}' has unexpected length`
  await ctx.dropWithError(NBD_REP_ERR_INVALID, message)
  if (fatal) throw new NegotiationFailed(message)
}

/** Options while TLS is required and not yet running. */
async function beforeTls(ctx: OptionContext, state: SessionState, fixedNewstyle: boolean): Promise<Outcome> {
  const hex = (ctx.option >>> 0).toString(16)
  if (!fixedNewstyle) throw new NegotiationFailed(`Unsupported option 0x${hex}`)
  switch (ctx.option) {
    case NBD_OPT_STARTTLS: {
      if (ctx.remaining) await rejectLength(ctx, true)
      await ctx.reply(NBD_REP_ACK)
      if (!state.channel.startTls) throw new NegotiationFailed('TLS is not available on this channel')
      state.channel = await state.channel.startTls()
      return undefined
    }
    case NBD_OPT_EXPORT_NAME:
      throw new NegotiationFailed(`Option 0x${hex} not permitted before TLS`)
    default:
      await ctx.dropWithError(NBD_REP_ERR_TLS_REQD, `Option 0x${hex} not permitted before TLS`).catch((e: unknown) => {
        if (ctx.option !== NBD_OPT_ABORT) throw e
      })
      return ctx.option === NBD_OPT_ABORT ? 'abort' : undefined
  }
}

/** A client without fixed newstyle may only choose an export by name. */
async function oldOption(ctx: OptionContext, state: SessionState, host: NegotiationHost, noZeroes: boolean): Promise<Outcome> {
  if (ctx.option === NBD_OPT_EXPORT_NAME) return exportName(ctx, state, host, noZeroes)
  throw new NegotiationFailed(`Unsupported option ${ctx.option >>> 0} (${optionName(ctx.option)})`)
}

async function fixedOption(ctx: OptionContext, state: SessionState, host: NegotiationHost, noZeroes: boolean): Promise<Outcome> {
  switch (ctx.option) {
    case NBD_OPT_LIST:
      if (ctx.remaining) return void await rejectLength(ctx, false)
      for (const e of host.exports) await ctx.reply(NBD_REP_SERVER, encodeServerReply(e.nameBytes, e.description ?? new Uint8Array(0)))
      await ctx.reply(NBD_REP_ACK)
      return undefined
    case NBD_OPT_ABORT:
      // The spec asks for a reply, and to tolerate clients that hang up before reading it.
      await ctx.reply(NBD_REP_ACK).catch(() => undefined)
      return 'abort'
    case NBD_OPT_EXPORT_NAME:
      return exportName(ctx, state, host, noZeroes)
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      return info(ctx, state, host)
    case NBD_OPT_STARTTLS:
      if (ctx.remaining) await rejectLength(ctx, false)
      else if (state.channel.secure) await ctx.error(NBD_REP_ERR_INVALID, 'TLS already enabled')
      else await ctx.error(NBD_REP_ERR_POLICY, 'TLS not configured')
      return undefined
    case NBD_OPT_STRUCTURED_REPLY:
      if (ctx.remaining) await rejectLength(ctx, false)
      else if (state.structuredReply) await ctx.error(NBD_REP_ERR_INVALID, 'structured reply already negotiated')
      else {
        await ctx.reply(NBD_REP_ACK)
        state.structuredReply = true
      }
      return undefined
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      await metaContexts(ctx, state, host)
      return undefined
    default:
      await ctx.dropWithError(NBD_REP_ERR_UNSUP, `Unsupported option ${ctx.option >>> 0} (${optionName(ctx.option)})`)
      return undefined
  }
}

/** Transmission flags as a client of this session sees them: DF only with structured replies. */
function flagsFor(exp: NbdExport, state: SessionState): number {
  return exp.transmissionFlags | (state.structuredReply ? NBD_FLAG_SEND_DF : 0)
}

/** The contexts agreed for `exp` (nbd_check_meta_export: a SET for another export does not count). */
function negotiated(state: SessionState, exp: NbdExport, checkAlignment: number): Negotiated {
  const meta = state.metaExport === exp ? state.meta : undefined
  return { channel: state.channel, export: exp, structuredReply: state.structuredReply, meta, checkAlignment }
}

/** NBD_OPT_EXPORT_NAME: no way to report an error but hanging up. */
async function exportName(ctx: OptionContext, state: SessionState, host: NegotiationHost, noZeroes: boolean): Promise<Outcome> {
  if (ctx.remaining > NBD_MAX_STRING_SIZE) throw new NegotiationFailed('Bad length received')
  const name = decodeString(await readExact(ctx.channel, ctx.remaining, 'export name'))
  ctx.remaining = 0
  const exp = findExport(host, name)
  if (!exp) throw new NegotiationFailed('export not found')
  await ctx.channel.write([encodeExportNameReply(exp.size, flagsFor(exp, state), noZeroes)])
  return negotiated(state, exp, 0)
}

/** NBD_OPT_INFO and NBD_OPT_GO (nbd_negotiate_handle_info). */
async function info(ctx: OptionContext, state: SessionState, host: NegotiationHost): Promise<Outcome> {
  const nameBytes = await ctx.name()
  let requests = await ctx.u16()
  let sendName = false
  let blockSize = false
  while (requests-- > 0) {
    const request = await ctx.u16()
    if (request === NBD_INFO_NAME) sendName = true
    else if (request === NBD_INFO_BLOCK_SIZE) blockSize = true
  }
  if (ctx.remaining) return void await rejectLength(ctx, false)
  const name = decodeString(nameBytes)
  const exp = findExport(host, name)
  if (!exp) return void await ctx.error(NBD_REP_ERR_UNKNOWN, `export '${sanitizeName(name)}' not present`)
  if (sendName) await ctx.reply(NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, nameBytes))
  if (exp.description) await ctx.reply(NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, exp.description))
  // The minimum is 1 for clients that do not promise to honour it (back-compat), as in QEMU.
  const honoured = ctx.option === NBD_OPT_INFO || blockSize
  const minimum = honoured ? exp.requestAlignment : 1
  await ctx.reply(NBD_REP_INFO, encodeInfoBlockSize(minimum, Math.max(exp.preferredBlockSize, minimum), exp.maximumBlockSize))
  await ctx.reply(NBD_REP_INFO, encodeInfoExport(exp.size, flagsFor(exp, state)))
  if (ctx.option === NBD_OPT_INFO && !blockSize && exp.requestAlignment > 1) {
    return void await ctx.error(NBD_REP_ERR_BLOCK_SIZE_REQD, 'request NBD_INFO_BLOCK_SIZE to use this export')
  }
  await ctx.reply(NBD_REP_ACK)
  return ctx.option === NBD_OPT_GO ? negotiated(state, exp, honoured ? exp.requestAlignment : 0) : undefined
}

/** NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT (nbd_negotiate_meta_queries). */
async function metaContexts(ctx: OptionContext, state: SessionState, host: NegotiationHost): Promise<void> {
  const list = ctx.option === NBD_OPT_LIST_META_CONTEXT
  if (!list && !state.structuredReply) {
    throw new InvalidOption(`request option '${optionName(ctx.option)}' when structured reply is not negotiated`)
  }
  // A SET forgets the previous selection, whatever happens next.
  if (!list) {
    state.meta = undefined
    state.metaExport = undefined
  }
  const name = decodeString(await ctx.name())
  const exp = findExport(host, name)
  if (!exp) return ctx.dropWithError(NBD_REP_ERR_UNKNOWN, `export '${sanitizeName(name)}' not present`)
  const selector = new MetaSelector(exp.offer, list)
  const queries = await ctx.u32()
  if (list && queries === 0) selector.selectAll()
  for (let i = 0; i < queries; i++) {
    const length = await ctx.u32()
    // Too long to be any context: skipped, as QEMU does.
    if (length > NBD_MAX_STRING_SIZE) await ctx.skip(length)
    else selector.add(decodeString(await ctx.read(length, true)))
  }
  if (ctx.remaining) return rejectLength(ctx, false)
  const selection = selector.finish()
  for (const c of selection.contexts) await ctx.reply(NBD_REP_META_CONTEXT, encodeMetaContextReply(list ? 0 : c.id, encodeString(c.name)))
  await ctx.reply(NBD_REP_ACK)
  if (!list) {
    state.meta = selection
    state.metaExport = exp
  }
}
