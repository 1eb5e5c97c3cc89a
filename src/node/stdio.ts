// Standard input and output as a byte source and a sink, for `convert -` (pipes). Reads and
// writes go through libuv's thread pool (the event loop stays free for the reads and codecs
// feeding the stream); a descriptor another program left non-blocking is polled on EAGAIN.
import { read, write } from 'node:fs'
import { ImageError } from '../errors.js'
import type { ByteSource, Sink } from '../io/sink.js'

const AGAIN_DELAY_MS = 2

function retryable(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code
  return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR'
}

function ioFailure(name: string, doing: string, e: unknown): ImageError {
  const err = e as NodeJS.ErrnoException
  const text = err.code === 'EPIPE' ? 'Broken pipe' : err.message
  return new ImageError('IO', `${name}: error while ${doing}: ${text}`, { cause: e })
}

const pause = () => new Promise<void>((resolve) => setTimeout(resolve, AGAIN_DELAY_MS))

function writeOnce(fd: number, data: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => write(fd, data, 0, data.length, null, (e, n) => e ? reject(e) : resolve(n)))
}

function readOnce(fd: number, into: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => read(fd, into, 0, into.length, null, (e, n) => e ? reject(e) : resolve(n)))
}

/** A sink over a file descriptor (1: standard output) that writes every byte, in order. */
export function descriptorSink(fd = 1, name = 'standard output'): Sink {
  return {
    name,
    async write(data) {
      for (let at = 0; at < data.length;) {
        try {
          at += await writeOnce(fd, data.subarray(at))
        } catch (e) {
          if (!retryable(e)) throw ioFailure(name, 'writing', e)
          await pause()
        }
      }
    },
    async close() {},
  }
}

/** A byte source over a file descriptor (0: standard input). */
export function descriptorSource(fd = 0, name = 'standard input'): ByteSource {
  let ended = false
  return {
    name,
    async readInto(into) {
      let filled = 0
      while (filled < into.length && !ended) {
        try {
          const n = await readOnce(fd, into.subarray(filled))
          if (n === 0) ended = true
          filled += n
        } catch (e) {
          if (!retryable(e)) throw ioFailure(name, 'reading', e)
          await pause()
        }
      }
      return filled
    },
  }
}
