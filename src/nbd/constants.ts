// NBD protocol constants (doc/proto.md of the NBD project; QEMU 7.2 include/block/nbd.h), as
// numbers. The protocol is big-endian throughout; 64-bit magics are given as two 32-bit halves.

/** "NBDMAGIC", the first 8 bytes the server sends. */
export const NBD_INIT_MAGIC_HI = 0x4e42444d
export const NBD_INIT_MAGIC_LO = 0x41474943
/** "IHAVEOPT": newstyle negotiation, and the magic in front of every option. */
export const NBD_OPTS_MAGIC_HI = 0x49484156
export const NBD_OPTS_MAGIC_LO = 0x454f5054
/** Magic in front of every option reply (0x3e889045565a9). */
export const NBD_REP_MAGIC_HI = 0x0003e889
export const NBD_REP_MAGIC_LO = 0x045565a9

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_NO_ZEROES = 1 << 1
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_C_NO_ZEROES = 1 << 1

// Transmission flags (16 bits, sent with the export size).
export const NBD_FLAG_HAS_FLAGS = 1 << 0
export const NBD_FLAG_READ_ONLY = 1 << 1
export const NBD_FLAG_SEND_FLUSH = 1 << 2
export const NBD_FLAG_SEND_FUA = 1 << 3
export const NBD_FLAG_ROTATIONAL = 1 << 4
export const NBD_FLAG_SEND_TRIM = 1 << 5
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
export const NBD_FLAG_SEND_DF = 1 << 7
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8
export const NBD_FLAG_SEND_RESIZE = 1 << 9
export const NBD_FLAG_SEND_CACHE = 1 << 10
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11

// Options.
export const NBD_OPT_EXPORT_NAME = 1
export const NBD_OPT_ABORT = 2
export const NBD_OPT_LIST = 3
export const NBD_OPT_STARTTLS = 5
export const NBD_OPT_INFO = 6
export const NBD_OPT_GO = 7
export const NBD_OPT_STRUCTURED_REPLY = 8
export const NBD_OPT_LIST_META_CONTEXT = 9
export const NBD_OPT_SET_META_CONTEXT = 10

// Option replies; errors have bit 31 set.
export const NBD_REP_ACK = 1
export const NBD_REP_SERVER = 2
export const NBD_REP_INFO = 3
export const NBD_REP_META_CONTEXT = 4
export const NBD_REP_ERR_UNSUP = 0x8000_0001
export const NBD_REP_ERR_POLICY = 0x8000_0002
export const NBD_REP_ERR_INVALID = 0x8000_0003
export const NBD_REP_ERR_PLATFORM = 0x8000_0004
export const NBD_REP_ERR_TLS_REQD = 0x8000_0005
export const NBD_REP_ERR_UNKNOWN = 0x8000_0006
export const NBD_REP_ERR_SHUTDOWN = 0x8000_0007
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x8000_0008

// Info types of NBD_REP_INFO.
export const NBD_INFO_EXPORT = 0
export const NBD_INFO_NAME = 1
export const NBD_INFO_DESCRIPTION = 2
export const NBD_INFO_BLOCK_SIZE = 3

// Requests.
export const NBD_REQUEST_MAGIC = 0x25609513
export const NBD_REQUEST_SIZE = 28
export const NBD_CMD_READ = 0
export const NBD_CMD_WRITE = 1
export const NBD_CMD_DISC = 2
export const NBD_CMD_FLUSH = 3
export const NBD_CMD_TRIM = 4
export const NBD_CMD_CACHE = 5
export const NBD_CMD_WRITE_ZEROES = 6
export const NBD_CMD_BLOCK_STATUS = 7

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1
export const NBD_CMD_FLAG_DF = 1 << 2
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4

// Replies.
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698
export const NBD_SIMPLE_REPLY_SIZE = 16
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef
export const NBD_STRUCTURED_REPLY_SIZE = 20
export const NBD_REPLY_FLAG_DONE = 1 << 0
export const NBD_REPLY_TYPE_NONE = 0
export const NBD_REPLY_TYPE_OFFSET_DATA = 1
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5
export const NBD_REPLY_TYPE_ERROR = (1 << 15) | 1
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

// Block status flags: base:allocation, and qemu:dirty-bitmap:NAME.
export const NBD_STATE_HOLE = 1 << 0
export const NBD_STATE_ZERO = 1 << 1
export const NBD_STATE_DIRTY = 1 << 0

// Errors in replies (the protocol's errno values).
export const NBD_EPERM = 1
export const NBD_EIO = 5
export const NBD_ENOMEM = 12
export const NBD_EINVAL = 22
export const NBD_ENOSPC = 28
export const NBD_EOVERFLOW = 75
export const NBD_ENOTSUP = 95
export const NBD_ESHUTDOWN = 108

/** Largest option payload and request payload QEMU accepts (NBD_MAX_BUFFER_SIZE). */
export const NBD_MAX_BUFFER_SIZE = 32 * 1024 * 1024
/** Longest name, description or context name (NBD_MAX_STRING_SIZE). */
export const NBD_MAX_STRING_SIZE = 4096
/** QEMU's cap on extents in one block status chunk: 1 MiB of extents (NBD_MAX_BLOCK_STATUS_EXTENTS). */
export const NBD_MAX_BLOCK_STATUS_EXTENTS = (1024 * 1024) / 8
/** Requests QEMU handles at once on one connection (MAX_NBD_REQUESTS). */
export const MAX_NBD_REQUESTS = 16
/** qemu-nbd's handshake deadline (NBD_DEFAULT_HANDSHAKE_MAX_SECS). */
export const NBD_DEFAULT_HANDSHAKE_MAX_SECS = 10
export const NBD_DEFAULT_PORT = 10809

// Meta context ids as QEMU numbers them (nbd/server.c).
export const NBD_META_ID_BASE_ALLOCATION = 0
export const NBD_META_ID_ALLOCATION_DEPTH = 1
export const NBD_META_ID_DIRTY_BITMAP = 2

/** nbd_opt_lookup: an option's name in QEMU's messages. */
export function optionName(option: number): string {
  switch (option) {
    case NBD_OPT_EXPORT_NAME: return 'export name'
    case NBD_OPT_ABORT: return 'abort'
    case NBD_OPT_LIST: return 'list'
    case NBD_OPT_STARTTLS: return 'starttls'
    case NBD_OPT_INFO: return 'info'
    case NBD_OPT_GO: return 'go'
    case NBD_OPT_STRUCTURED_REPLY: return 'structured reply'
    case NBD_OPT_LIST_META_CONTEXT: return 'list meta context'
    case NBD_OPT_SET_META_CONTEXT: return 'set meta context'
    default: return '<unknown>'
  }
}

/** nbd_cmd_lookup: a command's name in QEMU's messages. */
export function commandName(type: number): string {
  switch (type) {
    case NBD_CMD_READ: return 'read'
    case NBD_CMD_WRITE: return 'write'
    case NBD_CMD_DISC: return 'disconnect'
    case NBD_CMD_FLUSH: return 'flush'
    case NBD_CMD_TRIM: return 'trim'
    case NBD_CMD_CACHE: return 'cache'
    case NBD_CMD_WRITE_ZEROES: return 'write zeroes'
    case NBD_CMD_BLOCK_STATUS: return 'block status'
    default: return '<unknown>'
  }
}
