// Reusable shared memory for the codec pool: a task's input and output live in slots of
// SharedArrayBuffers that the calling thread and the workers both see, so no buffer is copied
// into a message, transferred, or left behind for the garbage collector.
//
// Why: V8 collects an isolate's garbage ArrayBuffers only after its external memory has grown by
// about 64 MiB since the last collection. A thread that allocates a fresh buffer per cluster
// therefore carries up to 64 MiB of dead buffers; with slots that are handed back and reused, the
// calling thread allocates nothing per cluster and stays near what is really in flight.

/** Slots of one size are kept for reuse up to this many bytes in all (beyond: left to the GC). */
const KEPT_BYTES = 32 * 1024 * 1024
/** The smallest slot (sizes are rounded up to a power of two, so few sizes recur). */
const MIN_SLOT = 4096

/** Free slots by size, reused first in, first out. */
export class SharedSlots {
  readonly #free = new Map<number, Uint8Array[]>()
  #keptBytes = 0

  /** True when this runtime has SharedArrayBuffer (a browser without cross-origin isolation lacks it). */
  static get available(): boolean {
    return typeof SharedArrayBuffer === 'function'
  }

  /** A slot of at least `length` bytes, viewed as exactly `length` bytes (contents undefined). */
  take(length: number): Uint8Array {
    const size = slotSize(length)
    const slot = this.#free.get(size)?.pop()
    if (slot) {
      this.#keptBytes -= size
      return slot.subarray(0, length)
    }
    return new Uint8Array(new SharedArrayBuffer(size), 0, length)
  }

  /** Hands a slot back (a view `take` returned); it must not be used afterwards. */
  give(view: Uint8Array): void {
    const size = view.buffer.byteLength
    if (this.#keptBytes + size > KEPT_BYTES) return
    const whole = new Uint8Array(view.buffer, 0, size)
    const list = this.#free.get(size)
    if (list) list.push(whole)
    else this.#free.set(size, [whole])
    this.#keptBytes += size
  }

  /** Bytes held in free slots now. */
  get keptBytes(): number {
    return this.#keptBytes
  }
}

function slotSize(length: number): number {
  let size = MIN_SLOT
  while (size < length) size *= 2
  return size
}

/** True when `bytes` is a view of shared memory (a worker sees the same bytes without a copy). */
export function isShared(bytes: Uint8Array): boolean {
  return typeof SharedArrayBuffer === 'function' && bytes.buffer instanceof SharedArrayBuffer
}
