// Listing a server's exports as a client (QEMU's nbd/client.c nbd_receive_export_list, which
// `qemu-nbd -L` prints): NBD_OPT_LIST for the names, then NBD_OPT_INFO (asking for block sizes)
// and, with structured replies, NBD_OPT_LIST_META_CONTEXT on each; NBD_OPT_ABORT at the end.
import { viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import type { NbdChannel } from './channel.js'
import { openHandshake, protocolError, takeInfoReply, type ClientHandshakeOptions, type InfoFacts, type OptionTalk } from './client-handshake.js'
import {
  NBD_INFO_BLOCK_SIZE, NBD_MAX_STRING_SIZE, NBD_OPT_ABORT, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK, NBD_REP_ERR_UNSUP, NBD_REP_META_CONTEXT, NBD_REP_SERVER,
} from './constants.js'
import { decodeString, encodeGoPayload, encodeMetaPayload, encodeOption } from './handshake.js'

/** One export as the listing saw it: flags 0 and block sizes 0 when the server did not tell. */
export interface ExportListing extends InfoFacts {
  name: string
  /** '' when the server sent none. */
  description: string
  /** Meta contexts the server lists for the export, in its order. */
  contexts: string[]
}

const empty = new Uint8Array(0)

/** NBD_REP_SERVER: name length, name, and the rest is the description (nbd_receive_list). */
function decodeServerReply(type: number, data: Uint8Array): { name: string; description: string } {
  if (type !== NBD_REP_SERVER) throw new ImageError('IO', `Unexpected reply type ${type}, expected ${NBD_REP_SERVER} (server)`)
  if (data.length < 4) throw new ImageError('IO', `incorrect option length ${data.length}`)
  const nameLength = viewOf(data).getUint32(0)
  if (nameLength > data.length - 4 || nameLength > NBD_MAX_STRING_SIZE) throw new ImageError('IO', "incorrect name length in server's list response")
  if (data.length - 4 - nameLength > NBD_MAX_STRING_SIZE) throw new ImageError('IO', "incorrect description length in server's list response")
  return { name: decodeString(data.subarray(4, 4 + nameLength)), description: decodeString(data.subarray(4 + nameLength)) }
}

/**
 * nbd_list_meta_contexts: every context for an empty query; when none of them is a qemu: one,
 * a second query for "qemu:" (QEMU 3.0 servers left those out of empty queries). Errors end
 * the list quietly.
 */
async function listContexts(talk: OptionTalk, exportName: string): Promise<string[]> {
  const contexts: string[] = []
  const each = (type: number, data: Uint8Array) => {
    if (type !== NBD_REP_META_CONTEXT) throw new ImageError('IO', `Unexpected reply type ${type}, expected ${NBD_REP_META_CONTEXT} (meta context)`)
    if (data.length <= 4) throw new ImageError('IO', `Failed to negotiate meta context, server answered with unexpected length ${data.length}`)
    contexts.push(decodeString(data.subarray(4)))
  }
  await talk.option(NBD_OPT_LIST_META_CONTEXT, encodeMetaPayload(exportName, []), each, false)
  if (contexts.length > 0 && !contexts.some((c) => c.startsWith('qemu:'))) {
    await talk.option(NBD_OPT_LIST_META_CONTEXT, encodeMetaPayload(exportName, ['qemu:']), each, false)
  }
  return contexts
}

/** The exports a server offers, with what OPT_INFO tells of each; closes the channel. */
export async function listExports(channel: NbdChannel, options: ClientHandshakeOptions = {}): Promise<ExportListing[]> {
  let talk: OptionTalk | undefined
  try {
    talk = await openHandshake(channel, options)
    const structured = (await talk.option(NBD_OPT_STRUCTURED_REPLY, empty, () => undefined, false)) === NBD_REP_ACK
    const listing: ExportListing[] = []
    // An unsupported NBD_OPT_LIST lists nothing.
    await talk.option(NBD_OPT_LIST, empty, (type, data) => {
      listing.push({ ...decodeServerReply(type, data), size: 0, transmissionFlags: 0, minimumBlockSize: 0, preferredBlockSize: 0, maximumBlockSize: 0, contexts: [] })
    }, true)
    for (const entry of listing) {
      const reply = await talk.option(NBD_OPT_INFO, encodeGoPayload(entry.name, [NBD_INFO_BLOCK_SIZE]), (type, data) => takeInfoReply(entry, type, data), true)
      // Without OPT_INFO the rest cannot be asked either.
      if (reply === NBD_REP_ERR_UNSUP) break
      if (entry.transmissionFlags === 0) throw protocolError('broken server omitted NBD_INFO_EXPORT')
      if (structured) entry.contexts = await listContexts(talk, entry.name)
    }
    // NBD_OPT_ABORT as a courtesy; the reply is not waited for.
    await talk.channel.write([encodeOption(NBD_OPT_ABORT)]).catch(() => undefined)
    return listing
  } finally {
    ;(talk?.channel ?? channel).close()
  }
}
