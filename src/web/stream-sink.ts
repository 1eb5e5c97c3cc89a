// A sink whose bytes become a ReadableStream: the stream writers (raw, qcow2) write into it, and
// the page reads it as fast as it saves (the writer waits while 8 MiB are queued, so a download
// never holds the whole image).
import type { Sink } from '../io/sink.js'

const QUEUED_BYTES = 8 * 1024 * 1024

/** A sink and the stream it feeds; `fail` ends the stream with an error. */
export function streamSink(name: string): { sink: Sink; stream: ReadableStream<Uint8Array>; fail: (reason: unknown) => void } {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let wake: (() => void) | undefined
  let cancelled: unknown
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => { controller = c },
    pull: () => { wake?.(); wake = undefined },
    cancel: (reason) => { cancelled = reason ?? new Error('download cancelled'); wake?.() },
  }, new ByteLengthQueuingStrategy({ highWaterMark: QUEUED_BYTES }))
  const sink: Sink = {
    name,
    async write(data) {
      if (cancelled !== undefined) throw cancelled
      // The writer reuses its buffer once this settles: the queue keeps a copy.
      controller.enqueue(data.slice())
      while ((controller.desiredSize ?? 1) <= 0 && cancelled === undefined) await new Promise<void>((resolve) => { wake = resolve })
    },
    async close() {
      controller.close()
    },
  }
  return { sink, stream, fail: (reason) => { if (cancelled === undefined) controller.error(reason) } }
}
