// Sequential I/O: a sink takes bytes in order and never seeks back (a pipe, standard output, an
// upload's parts in order); a byte source hands out a stream's bytes in order (standard input).
// Writers to a sink decide their whole layout before the first byte.

/** Where a streamed image goes: appended bytes, in order. */
export interface Sink {
  /** A name for messages ("standard output", a key). */
  readonly name: string
  /** Appends `data`. The caller may reuse `data` once the promise settles. */
  write(data: Uint8Array): Promise<void>
  /** Ends the stream (all bytes delivered). */
  close(): Promise<void>
}

/** A stream's bytes in order. */
export interface ByteSource {
  readonly name: string
  /**
   * Fills `into` from the stream; resolves to the bytes read, fewer than `into.length` only at
   * the end of the stream (0 once it has ended).
   */
  readInto(into: Uint8Array): Promise<number>
}

/** Zero bytes written per call by {@link writeZeroBytesTo}. */
const ZERO_PIECE_BYTES = 1024 * 1024
let zeroPiece: Uint8Array | undefined

/** Appends `length` zero bytes to a sink, a piece at a time. */
export async function writeZeroBytesTo(sink: Sink, length: number): Promise<void> {
  zeroPiece ??= new Uint8Array(ZERO_PIECE_BYTES)
  for (let left = length; left > 0; left -= ZERO_PIECE_BYTES) await sink.write(zeroPiece.subarray(0, Math.min(left, ZERO_PIECE_BYTES)))
}

/** A sink that counts what it was given: the offset the next byte lands at. */
export class CountingSink implements Sink {
  written = 0
  constructor(readonly inner: Sink) {}
  get name(): string {
    return this.inner.name
  }
  async write(data: Uint8Array): Promise<void> {
    await this.inner.write(data)
    this.written += data.length
  }
  /** Pads with zeros up to `offset` (which must not lie behind). */
  async padTo(offset: number): Promise<void> {
    if (offset < this.written) throw new Error(`${this.name}: cannot pad back from ${this.written} to ${offset}`)
    await writeZeroBytesTo(this, offset - this.written)
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}

/** A sink into memory (tests, small images). */
export class MemorySink implements Sink {
  readonly name = 'memory'
  readonly #parts: Uint8Array[] = []
  closed = false
  async write(data: Uint8Array): Promise<void> {
    this.#parts.push(data.slice())
  }
  async close(): Promise<void> {
    this.closed = true
  }
  /** Everything written, in one buffer. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#parts.reduce((n, p) => n + p.length, 0))
    let at = 0
    for (const p of this.#parts) {
      out.set(p, at)
      at += p.length
    }
    return out
  }
}
