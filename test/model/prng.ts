// A seeded PRNG (mulberry32) for reproducible model tests: every failure names its seed, and the
// same seed replays the same operations and the same data.

/** Deterministic random source. */
export class Prng {
  #state: number

  constructor(readonly seed: number) {
    this.#state = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][]
    let total = 0
    for (const [, w] of entries) total += w
    let r = this.next() * total
    for (const [k, w] of entries) {
      r -= w
      if (r < 0) return k
    }
    return entries[entries.length - 1]![0]
  }

  /** `length` random bytes (never all zero in practice, so misplaced zeros show). */
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length)
    const words = new Uint32Array(out.buffer, 0, length >>> 2)
    for (let i = 0; i < words.length; i++) words[i] = (this.next() * 4294967296) >>> 0
    for (let i = words.length * 4; i < length; i++) out[i] = this.int(256)
    return out
  }
}
