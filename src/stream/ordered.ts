// Work in parallel, results in order: what every streamed output needs (reads and compression
// run ahead, bytes leave in file order), with a fixed set of buffer slots.

/**
 * Runs `produce(i, slot)` for i in [0, count) with at most `parallel` results pending and hands
 * each result to `consume` in index order. Slot `i % parallel` belongs to item i until its
 * consume has finished, so producers can fill reusable buffers. The first failure rejects (the
 * items still running are awaited first, so no work outlives the call).
 */
export async function inOrder<T>(count: number, parallel: number, produce: (index: number, slot: number) => Promise<T>, consume: (value: T, index: number) => Promise<void>): Promise<void> {
  const width = Math.max(1, parallel)
  const pending: Promise<T>[] = []
  let next = 0
  const start = (): void => {
    const index = next++
    const p = produce(index, index % width)
    p.catch(() => {}) // awaited below, in order; a later item's failure waits for its turn
    pending.push(p)
  }
  try {
    while (next < count && pending.length < width) start()
    for (let index = 0; index < count; index++) {
      const value = await pending.shift()!
      await consume(value, index)
      if (next < count) start()
    }
  } finally {
    await Promise.allSettled(pending)
  }
}
