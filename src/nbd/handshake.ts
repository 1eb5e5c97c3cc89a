// Encode and decode the messages of the NBD handshake (proto.md "Handshake", "Option types",
// "Option reply types"): the server greeting, option headers, option replies and their
// payloads. Pure code over Uint8Array, for the server here and for a client.
import { concatBytes, viewOf } from '../binary/bytes.js'
import {
  NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT, NBD_INIT_MAGIC_HI, NBD_INIT_MAGIC_LO,
  NBD_OPTS_MAGIC_HI, NBD_OPTS_MAGIC_LO, NBD_REP_MAGIC_HI, NBD_REP_MAGIC_LO,
} from './constants.js'

export const GREETING_SIZE = 18
export const OPTION_HEADER_SIZE = 16
export const OPTION_REPLY_HEADER_SIZE = 20
/** Reply to NBD_OPT_EXPORT_NAME: size, flags and 124 reserved zero bytes unless NO_ZEROES. */
export const EXPORT_NAME_REPLY_SIZE = 134

const utf8 = new TextEncoder()
const text = new TextDecoder()

/** The bytes of a name, description or context name as sent on the wire. */
export function encodeString(value: string): Uint8Array {
  return utf8.encode(value)
}

/** A wire string as text (names are compared as text). */
export function decodeString(bytes: Uint8Array): string {
  return text.decode(bytes)
}

/** The newstyle greeting: NBDMAGIC, IHAVEOPT, handshake flags (FIXED_NEWSTYLE | NO_ZEROES as qemu-nbd). */
export function encodeGreeting(handshakeFlags = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES): Uint8Array {
  const out = new Uint8Array(GREETING_SIZE)
  const view = viewOf(out)
  view.setUint32(0, NBD_INIT_MAGIC_HI)
  view.setUint32(4, NBD_INIT_MAGIC_LO)
  view.setUint32(8, NBD_OPTS_MAGIC_HI)
  view.setUint32(12, NBD_OPTS_MAGIC_LO)
  view.setUint16(16, handshakeFlags)
  return out
}

/** A greeting as a client reads it: undefined when the magics are not newstyle's. */
export function decodeGreeting(bytes: Uint8Array): { handshakeFlags: number } | undefined {
  const view = viewOf(bytes)
  if (view.getUint32(0) !== NBD_INIT_MAGIC_HI || view.getUint32(4) !== NBD_INIT_MAGIC_LO) return undefined
  if (view.getUint32(8) !== NBD_OPTS_MAGIC_HI || view.getUint32(12) !== NBD_OPTS_MAGIC_LO) return undefined
  return { handshakeFlags: view.getUint16(16) }
}

/** The header of an option the client sends. */
export interface OptionHeader {
  /** The 8-byte IHAVEOPT magic was there. */
  magicOk: boolean
  option: number
  /** Bytes of payload that follow. */
  length: number
}

export function decodeOptionHeader(bytes: Uint8Array): OptionHeader {
  const view = viewOf(bytes)
  return {
    magicOk: view.getUint32(0) === NBD_OPTS_MAGIC_HI && view.getUint32(4) === NBD_OPTS_MAGIC_LO,
    option: view.getUint32(8),
    length: view.getUint32(12),
  }
}

/** An option header with its payload (a client's side, and tests). */
export function encodeOption(option: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(OPTION_HEADER_SIZE + payload.length)
  const view = viewOf(out)
  view.setUint32(0, NBD_OPTS_MAGIC_HI)
  view.setUint32(4, NBD_OPTS_MAGIC_LO)
  view.setUint32(8, option)
  view.setUint32(12, payload.length)
  out.set(payload, OPTION_HEADER_SIZE)
  return out
}

/** The header of an option reply, `length` bytes of payload to follow. */
export function encodeOptionReplyHeader(option: number, type: number, length: number): Uint8Array {
  const out = new Uint8Array(OPTION_REPLY_HEADER_SIZE)
  const view = viewOf(out)
  view.setUint32(0, NBD_REP_MAGIC_HI)
  view.setUint32(4, NBD_REP_MAGIC_LO)
  view.setUint32(8, option)
  view.setUint32(12, type >>> 0)
  view.setUint32(16, length)
  return out
}

/** An option reply header as a client reads it. */
export interface OptionReplyHeader {
  magicOk: boolean
  option: number
  type: number
  length: number
}

export function decodeOptionReplyHeader(bytes: Uint8Array): OptionReplyHeader {
  const view = viewOf(bytes)
  return {
    magicOk: view.getUint32(0) === NBD_REP_MAGIC_HI && view.getUint32(4) === NBD_REP_MAGIC_LO,
    option: view.getUint32(8),
    type: view.getUint32(12),
    length: view.getUint32(16),
  }
}

/** A 32-bit length followed by the bytes (names in option payloads). */
export function lengthPrefixed(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length)
  viewOf(out).setUint32(0, bytes.length)
  out.set(bytes, 4)
  return out
}

/** u64 as two 32-bit halves (sizes above 2^53 are not representable and never produced). */
function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x1_0000_0000))
  view.setUint32(at + 4, value >>> 0)
}

/** NBD_INFO_EXPORT payload: info type, export size, transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Uint8Array {
  const out = new Uint8Array(12)
  const view = viewOf(out)
  view.setUint16(0, NBD_INFO_EXPORT)
  setU64(view, 2, size)
  view.setUint16(10, transmissionFlags)
  return out
}

/** NBD_INFO_BLOCK_SIZE payload: minimum, preferred, maximum. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Uint8Array {
  const out = new Uint8Array(14)
  const view = viewOf(out)
  view.setUint16(0, NBD_INFO_BLOCK_SIZE)
  view.setUint32(2, minimum)
  view.setUint32(6, preferred)
  view.setUint32(10, maximum)
  return out
}

/** NBD_INFO_NAME / NBD_INFO_DESCRIPTION payload: info type and the text (no length field). */
export function encodeInfoString(infoType: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + value.length)
  viewOf(out).setUint16(0, infoType)
  out.set(value, 2)
  return out
}

/** NBD_REP_SERVER payload: name length, name, description (the rest). */
export function encodeServerReply(name: Uint8Array, description: Uint8Array): Uint8Array {
  return concatBytes([lengthPrefixed(name), description])
}

/** NBD_REP_META_CONTEXT payload: context id and name. */
export function encodeMetaContextReply(contextId: number, name: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + name.length)
  viewOf(out).setUint32(0, contextId)
  out.set(name, 4)
  return out
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, and the zero padding unless NO_ZEROES was agreed. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Uint8Array {
  const out = new Uint8Array(noZeroes ? 10 : EXPORT_NAME_REPLY_SIZE)
  const view = viewOf(out)
  setU64(view, 0, size)
  view.setUint16(8, transmissionFlags)
  return out
}

/** Payload of NBD_OPT_INFO / NBD_OPT_GO (a client's side, and tests). */
export function encodeGoPayload(name: string, infoRequests: readonly number[]): Uint8Array {
  const requests = new Uint8Array(2 + 2 * infoRequests.length)
  const view = viewOf(requests)
  view.setUint16(0, infoRequests.length)
  infoRequests.forEach((r, i) => view.setUint16(2 + 2 * i, r))
  return concatBytes([lengthPrefixed(encodeString(name)), requests])
}

/** Payload of NBD_OPT_LIST/SET_META_CONTEXT (a client's side, and tests). */
export function encodeMetaPayload(exportName: string, queries: readonly string[]): Uint8Array {
  const count = new Uint8Array(4)
  viewOf(count).setUint32(0, queries.length)
  return concatBytes([lengthPrefixed(encodeString(exportName)), count, ...queries.map((q) => lengthPrefixed(encodeString(q)))])
}
