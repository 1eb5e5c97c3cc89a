// A FIFO async mutex: metadata changes of one image run one at a time; reads never take it.

/** Serializes async critical sections. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve()

  /** Runs `fn` after every section queued before it has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn)
    this.#tail = result.then(() => undefined, () => undefined)
    return result
  }
}
