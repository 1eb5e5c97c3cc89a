// Encode and decode the messages of the NBD transmission phase (proto.md "Transmission",
// "Structured reply chunk message types"): requests, simple replies and structured reply
// chunks. Pure code over Uint8Array.
import { viewOf } from '../binary/bytes.js'
import {
  NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE, NBD_REQUEST_MAGIC, NBD_REQUEST_SIZE, NBD_SIMPLE_REPLY_MAGIC, NBD_SIMPLE_REPLY_SIZE,
  NBD_STRUCTURED_REPLY_MAGIC, NBD_STRUCTURED_REPLY_SIZE,
} from './constants.js'

/** A request header (28 bytes on the wire). */
export interface Request {
  magicOk: boolean
  /** Command flags (NBD_CMD_FLAG_*). */
  flags: number
  type: number
  /** The client's opaque 8-byte cookie, echoed in every reply. */
  handle: Uint8Array
  /**
   * Offset. Exact up to 2^53; anything larger is past every export, so it is kept as an
   * approximate number that compares beyond the end (never used as an offset).
   */
  offset: number
  length: number
}

/** Reads a u64 as a number; exact below 2^53, approximate (and huge) above. */
function getU64Loose(view: DataView, at: number): number {
  return view.getUint32(at) * 0x1_0000_0000 + view.getUint32(at + 4)
}

function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x1_0000_0000))
  view.setUint32(at + 4, value >>> 0)
}

export function decodeRequest(bytes: Uint8Array): Request {
  const view = viewOf(bytes)
  return {
    magicOk: view.getUint32(0) === NBD_REQUEST_MAGIC,
    flags: view.getUint16(4),
    type: view.getUint16(6),
    handle: bytes.slice(8, 16),
    offset: getU64Loose(view, 16),
    length: view.getUint32(24),
  }
}

/** A request header (a client's side, and tests). */
export function encodeRequest(type: number, flags: number, handle: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(NBD_REQUEST_SIZE)
  const view = viewOf(out)
  view.setUint32(0, NBD_REQUEST_MAGIC)
  view.setUint16(4, flags)
  view.setUint16(6, type)
  out.set(handle.subarray(0, 8), 8)
  setU64(view, 16, offset)
  view.setUint32(24, length)
  return out
}

/** A simple reply header: error (0 for success) and handle; read data follows (`target`: written into its first bytes). */
export function encodeSimpleReply(error: number, handle: Uint8Array, target?: Uint8Array): Uint8Array {
  const out = target ?? new Uint8Array(NBD_SIMPLE_REPLY_SIZE)
  const view = viewOf(out)
  view.setUint32(0, NBD_SIMPLE_REPLY_MAGIC)
  view.setUint32(4, error)
  out.set(handle, 8)
  return out
}

/** A structured reply chunk header with room for `extra` bytes of the chunk's own fields. */
function chunk(flags: number, type: number, handle: Uint8Array, length: number, extra: number, target?: Uint8Array): { out: Uint8Array; view: DataView } {
  const out = target ?? new Uint8Array(NBD_STRUCTURED_REPLY_SIZE + extra)
  const view = viewOf(out)
  view.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC)
  view.setUint16(4, flags)
  view.setUint16(6, type)
  out.set(handle, 8)
  view.setUint32(16, length)
  return { out, view }
}

const doneFlag = (final: boolean): number => final ? NBD_REPLY_FLAG_DONE : 0

/** NBD_REPLY_TYPE_NONE with DONE: the end of a reply that carries nothing else. */
export function encodeChunkDone(handle: Uint8Array): Uint8Array {
  return chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handle, 0, 0).out
}

/** Bytes of an NBD_REPLY_TYPE_OFFSET_DATA chunk before its data. */
export const CHUNK_DATA_HEADER_SIZE = NBD_STRUCTURED_REPLY_SIZE + 8

/**
 * NBD_REPLY_TYPE_OFFSET_DATA header and offset; `dataLength` bytes of data follow. With
 * `target`, written into its first CHUNK_DATA_HEADER_SIZE bytes (a buffer the data is read into
 * right behind the header, so the reply leaves as one piece).
 */
export function encodeChunkData(handle: Uint8Array, offset: number, dataLength: number, final: boolean, target?: Uint8Array): Uint8Array {
  const { out, view } = chunk(doneFlag(final), NBD_REPLY_TYPE_OFFSET_DATA, handle, 8 + dataLength, 8, target)
  setU64(view, 20, offset)
  return out
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: `length` bytes at `offset` read as zeros. */
export function encodeChunkHole(handle: Uint8Array, offset: number, length: number, final: boolean): Uint8Array {
  const { out, view } = chunk(doneFlag(final), NBD_REPLY_TYPE_OFFSET_HOLE, handle, 12, 12)
  setU64(view, 20, offset)
  view.setUint32(28, length)
  return out
}

/** One block status descriptor: a length and the context's flags. */
export interface StatusExtent {
  length: number
  flags: number
}

/** NBD_REPLY_TYPE_BLOCK_STATUS: context id and extents. */
export function encodeChunkBlockStatus(handle: Uint8Array, contextId: number, extents: readonly StatusExtent[], final: boolean): Uint8Array {
  const { out, view } = chunk(doneFlag(final), NBD_REPLY_TYPE_BLOCK_STATUS, handle, 4 + 8 * extents.length, 4 + 8 * extents.length)
  view.setUint32(20, contextId)
  extents.forEach((e, i) => {
    view.setUint32(24 + 8 * i, e.length)
    view.setUint32(28 + 8 * i, e.flags)
  })
  return out
}

/** NBD_REPLY_TYPE_ERROR with DONE: error and message. */
export function encodeChunkError(handle: Uint8Array, error: number, message: Uint8Array): Uint8Array {
  const { out, view } = chunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, 6 + message.length, 6 + message.length)
  view.setUint32(20, error)
  view.setUint16(24, message.length)
  out.set(message, 26)
  return out
}

/** A reply header as a client reads it: simple or structured, told apart by the magic. */
export type ReplyHeader =
  | { kind: 'simple'; error: number; handle: Uint8Array }
  | { kind: 'structured'; flags: number; type: number; handle: Uint8Array; length: number }
  | { kind: 'bad'; magic: number }

/** Decodes the first 16 bytes of a reply; a structured one needs 4 more (`decodeStructuredLength`). */
export function decodeReplyStart(bytes: Uint8Array): ReplyHeader {
  const view = viewOf(bytes)
  const magic = view.getUint32(0)
  if (magic === NBD_SIMPLE_REPLY_MAGIC) return { kind: 'simple', error: view.getUint32(4), handle: bytes.slice(8, 16) }
  if (magic === NBD_STRUCTURED_REPLY_MAGIC && bytes.length >= NBD_STRUCTURED_REPLY_SIZE) {
    return { kind: 'structured', flags: view.getUint16(4), type: view.getUint16(6), handle: bytes.slice(8, 16), length: view.getUint32(16) }
  }
  return { kind: 'bad', magic }
}

/** Whether a structured reply's magic opens `bytes` (its header is 20 bytes, not 16). */
export function isStructuredMagic(bytes: Uint8Array): boolean {
  return viewOf(bytes).getUint32(0) === NBD_STRUCTURED_REPLY_MAGIC
}

/** A structured chunk's payload decoded (client side). */
export function decodeOffsetHole(payload: Uint8Array): { offset: number; length: number } {
  const view = viewOf(payload)
  return { offset: getU64Loose(view, 0), length: view.getUint32(8) }
}

export function decodeBlockStatus(payload: Uint8Array): { contextId: number; extents: StatusExtent[] } {
  const view = viewOf(payload)
  const extents: StatusExtent[] = []
  for (let at = 4; at + 8 <= payload.length; at += 8) extents.push({ length: view.getUint32(at), flags: view.getUint32(at + 4) })
  return { contextId: view.getUint32(0), extents }
}

export function decodeError(payload: Uint8Array): { error: number; message: Uint8Array } {
  const view = viewOf(payload)
  const length = Math.min(view.getUint16(4), payload.length - 6)
  return { error: view.getUint32(0), message: payload.subarray(6, 6 + length) }
}

export function decodeOffset(payload: Uint8Array): number {
  return getU64Loose(viewOf(payload), 0)
}
