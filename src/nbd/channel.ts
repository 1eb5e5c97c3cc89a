// The byte stream an NBD connection runs over, as the protocol code sees it: exact reads and
// whole writes. The Node server adapts sockets to it (src/node/nbd-server.ts); tests can adapt
// anything else. Nothing here depends on Node.
import { ImageError } from '../errors.js'

export interface NbdChannel {
  /**
   * Exactly `length` bytes. Resolves undefined when the peer closed cleanly before the first
   * byte; rejects with an IO ImageError when it closed in the middle or the channel failed.
   */
  read(length: number): Promise<Uint8Array | undefined>
  /**
   * Exactly `length` bytes when they are buffered already and no read is pending, else
   * undefined (then {@link read} them): a server takes pipelined requests without a promise each.
   */
  readBuffered?(length: number): Uint8Array | undefined
  /** Writes `parts` back to back, never interleaved with another write; resolves once handed on. */
  write(parts: readonly Uint8Array[]): Promise<void>
  /** Ends the connection; pending reads resolve undefined or reject. */
  close(): void
  /** Present when the channel can switch to TLS (NBD_OPT_STARTTLS): resolves to the TLS channel. */
  startTls?(): Promise<NbdChannel>
  /** True on a channel that already runs TLS. */
  readonly secure?: boolean
}

/** Reads exactly `length` bytes or fails: EOF is an error here (mid-message), in nbd_read's words. */
export async function readExact(channel: NbdChannel, length: number, what: string): Promise<Uint8Array> {
  const bytes = await channel.read(length)
  if (!bytes) throw new ImageError('IO', `Failed to read ${what}: Unexpected end-of-file before all data were read`)
  return bytes
}

/** Bytes dropped per read when skipping a payload. */
const DROP_PIECE = 64 * 1024

/** Reads and discards `length` bytes a piece at a time (nbd_drop). */
export async function dropBytes(channel: NbdChannel, length: number, what: string): Promise<void> {
  for (let left = length; left > 0;) {
    const piece = Math.min(left, DROP_PIECE)
    await readExact(channel, piece, what)
    left -= piece
  }
}
