// A storage that records every change it passes on (writes, truncates, flushes), so a test can
// rebuild the file as a power loss after any write would leave it: the changes in order up to
// that point, or everything up to the last flush plus any subset of the later changes (a disk
// may reorder writes between flushes).
import type { Storage } from '../../src/io/storage.js'
import { MemoryStorage } from '../../src/io/memory.js'

export type Change = { kind: 'write'; offset: number; bytes: Uint8Array } | { kind: 'zero'; offset: number; length: number } | { kind: 'truncate'; length: number } | { kind: 'flush' }

/**
 * In-memory storage with a journal of its changes. With `zeroes`, it also zeroes ranges without
 * writing them (as a file's fallocate ZERO_RANGE), one change each.
 */
export class JournalStorage implements Storage {
  readonly journal: Change[] = []
  readonly #memory: MemoryStorage
  readonly name: string
  readonly writeZeroes?: (offset: number, length: number) => Promise<void>
  constructor(initial: Uint8Array, name: string, options: { zeroes?: boolean } = {}) {
    this.#memory = new MemoryStorage(initial.slice(), name)
    this.name = name
    if (options.zeroes) {
      this.writeZeroes = async (offset, length) => {
        this.journal.push({ kind: 'zero', offset, length })
        await this.#memory.writeZeroes(offset, length)
      }
    }
  }
  size(): Promise<number> { return this.#memory.size() }
  read(offset: number, length: number): Promise<Uint8Array> { return this.#memory.read(offset, length) }
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.journal.push({ kind: 'write', offset, bytes: data.slice() })
    await this.#memory.write(offset, data)
  }
  async truncate(length: number): Promise<void> {
    this.journal.push({ kind: 'truncate', length })
    await this.#memory.truncate(length)
  }
  async flush(): Promise<void> {
    this.journal.push({ kind: 'flush' })
  }
  async close(): Promise<void> {}
}

/** Applies `change` to `file`. */
export async function applyChange(file: MemoryStorage, change: Change): Promise<void> {
  if (change.kind === 'write') await file.write(change.offset, change.bytes)
  else if (change.kind === 'zero') await file.writeZeroes(change.offset, change.length)
  else if (change.kind === 'truncate') await file.truncate(change.length)
}

/** `base` with `changes[from..to)` applied, those `keep` accepts. */
export async function replay(base: Uint8Array, changes: readonly Change[], from: number, to: number, keep: (index: number) => boolean): Promise<Uint8Array> {
  const file = new MemoryStorage(base.slice(), 'replay')
  for (let i = from; i < to; i++) if (keep(i)) await applyChange(file, changes[i]!)
  return file.bytes().slice()
}

/** Index of the last flush before change `end`, or -1. */
export function lastFlushBefore(changes: readonly Change[], end: number): number {
  for (let i = end - 1; i >= 0; i--) if (changes[i]!.kind === 'flush') return i
  return -1
}
