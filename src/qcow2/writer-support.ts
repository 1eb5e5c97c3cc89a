// Two small helpers of the QCOW2 writer: where metadata lives (the overlap check) and a count of
// operations in flight that others can wait out.

/**
 * Where metadata lives, for the overlap check: single clusters (L2 tables, refcount blocks) in
 * a map, ranges (L1 tables, refcount table, snapshot table) as intervals — sizes read from a
 * hostile image never turn into per-cluster entries.
 */
export class OverlapMap {
  #clusters = new Map<number, string>()
  #ranges: { start: number; end: number; what: string }[] = []
  addCluster(cluster: number, what: string): void {
    if (!this.#clusters.has(cluster)) this.#clusters.set(cluster, what)
  }
  addRange(offset: number, length: number, what: string): void {
    if (length > 0) this.#ranges.push({ start: offset, end: offset + length, what })
  }
  /** The first metadata structure in the clusters of `[offset, offset+length)`, if any. */
  find(offset: number, length: number, clusterSize: number): { what: string; cluster: number } | undefined {
    const first = Math.floor(offset / clusterSize)
    const last = Math.floor((offset + length - 1) / clusterSize)
    for (let c = first; c <= last; c++) {
      const what = this.#clusters.get(c)
      if (what) return { what, cluster: c }
    }
    const start = first * clusterSize
    const end = (last + 1) * clusterSize
    for (const r of this.#ranges) {
      if (r.start < end && r.end > start) return { what: r.what, cluster: Math.floor(Math.max(r.start, start) / clusterSize) }
    }
    return undefined
  }
}

/** Counts operations in progress and lets others wait until none is. */
export class InFlight {
  #count = 0
  #waiters: (() => void)[] = []
  async run<T>(fn: () => Promise<T>): Promise<T> {
    this.#count++
    try {
      return await fn()
    } finally {
      if (--this.#count === 0) for (const wake of this.#waiters.splice(0)) wake()
    }
  }
  drained(): Promise<void> {
    return this.#count === 0 ? Promise.resolve() : new Promise((resolve) => this.#waiters.push(resolve))
  }
}
