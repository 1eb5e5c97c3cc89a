// Standard input as qemu-io reads it without a terminal: fgets into a 1024-byte buffer, line by
// line, blocking — commands run as they arrive (a test may feed them slowly).
import { readSync } from 'node:fs'

/** fgets' buffer: a longer line comes in pieces of 1023 characters. */
const MAX_LINE = 1023

/** A reader of lines from a file descriptor; undefined at end of input. */
export function fdLineReader(fd = 0): () => string | undefined {
  let pending = Buffer.alloc(0)
  let ended = false
  const chunk = Buffer.alloc(65536)
  return () => {
    for (;;) {
      const newline = pending.indexOf(10)
      const take = newline >= 0 ? Math.min(newline + 1, MAX_LINE) : pending.length >= MAX_LINE || ended ? Math.min(pending.length, MAX_LINE) : 0
      if (take > 0) {
        const line = pending.subarray(0, take).toString()
        pending = pending.subarray(take)
        return line.endsWith('\n') ? line.slice(0, -1) : line
      }
      if (ended) return undefined
      const n = readChunk(fd, chunk)
      if (n === 0) ended = true
      else pending = Buffer.concat([pending, chunk.subarray(0, n)])
    }
  }
}

/** One read(2); waits out EAGAIN (a non-blocking descriptor) instead of failing. */
function readChunk(fd: number, into: Buffer): number {
  for (;;) {
    try {
      return readSync(fd, into, 0, into.length, null)
    } catch (e) {
      const code = (e as { code?: string }).code
      if (code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10)
        continue
      }
      if (code === 'EOF') return 0
      throw e
    }
  }
}
