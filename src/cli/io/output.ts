// qemu-io's two streams as C's stdio gives them: stderr unbuffered, stdout fully buffered in
// blocks of 4096 bytes when it is a pipe or file (line-buffered on a terminal). Test suites merge
// both streams (2>&1), so where an error line lands among the reports depends on this buffering.
import type { CliContext } from '../context.js'

/** glibc's stdout buffer for a pipe or regular file (st_blksize). */
const BLOCK_BYTES = 4096

/** stdout as stdio buffers it; `flush()` is fflush(stdout). */
export class BufferedOut {
  #pending = ''
  readonly #ctx: CliContext
  readonly #lineBuffered: boolean

  constructor(ctx: CliContext, lineBuffered: boolean) {
    this.#ctx = ctx
    this.#lineBuffered = lineBuffered
  }

  /** printf: keeps the text until a block is full (or a line is complete, on a terminal). */
  write(text: string): void {
    this.#pending += text
    if (this.#lineBuffered) {
      const end = this.#pending.lastIndexOf('\n')
      if (end >= 0) this.#emit(end + 1)
      return
    }
    // glibc writes whole blocks: what has left the buffer is always a multiple of the block size.
    // (Counted in UTF-16 units: qemu-io's reports are ASCII; a file name may be off by a few.)
    const length = this.#pending.length
    if (length >= BLOCK_BYTES) this.#emit(length - (length % BLOCK_BYTES))
  }

  /** fflush(stdout). */
  flush(): void {
    if (this.#pending !== '') this.#emit(this.#pending.length)
  }

  #emit(chars: number): void {
    this.#ctx.out(this.#pending.slice(0, chars))
    this.#pending = this.#pending.slice(chars)
  }
}
