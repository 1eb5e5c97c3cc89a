// A child process for the crash tests: opens a qcow2 image with the library and applies a seeded,
// endless stream of guest operations (writes of many sizes and alignments, zero writes, discards)
// with flushes between them, until it is killed. On stdout, one line each: `ready` once open,
// `op I` before operation I starts, `flushed I` once a flush covering operations 0..I completed
// (written with write(2) before going on, so a line read happened before the kill).
// Usage: node writer-process.js IMAGE SEED
import { prng } from '../helpers/prng.js'
import { writeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { openImage } from '../../src/node/open.js'

/** One guest operation. Data writes fill their range with `pattern`. */
export interface Op {
  kind: 'write' | 'zero' | 'discard'
  offset: number
  length: number
  pattern: number
}


/**
 * The operations of a run, in order, and after which ones the child flushes: the same for the
 * parent (to rebuild what must be on disk) and the child (to do it).
 */
export function* operations(seed: number, size: number, clusterSize: number): Generator<Op & { flushAfter: boolean }> {
  const random = prng(seed)
  const pick = (n: number) => Math.floor(random() * n)
  for (let i = 0; ; i++) {
    const roll = pick(16)
    const flushAfter = pick(6) === 0
    const pattern = ((seed + i) % 251) + 1
    if (roll < 2) {
      // Whole clusters (discard acts on whole clusters only).
      const clusters = 1 + pick(8)
      const first = pick(Math.floor(size / clusterSize) - clusters + 1)
      yield { kind: 'discard', offset: first * clusterSize, length: clusters * clusterSize, pattern, flushAfter }
      continue
    }
    const length = roll < 6 ? 1 + pick(4096) : roll < 12 ? 1 + pick(4 * clusterSize) : clusterSize * (1 + pick(6))
    const aligned = pick(3) === 0
    const offset = aligned ? pick(Math.floor((size - length) / clusterSize) + 1) * clusterSize : pick(size - length + 1)
    yield { kind: roll < 4 ? 'zero' : 'write', offset, length, pattern, flushAfter }
  }
}

async function main(path: string, seed: number): Promise<void> {
  const device = await openImage(path, { writable: true, cache: 'unsafe' })
  const image = device.driver as unknown as { layout: { geometry: { clusterSize: number } } }
  // A write(2) to the pipe before going on: process.stdout may queue, and a kill would lose the line.
  const say = (line: string) => writeSync(1, line + '\n')
  say('ready')
  let i = 0
  for (const op of operations(seed, device.size, image.layout.geometry.clusterSize)) {
    say(`op ${i}`)
    if (op.kind === 'write') await device.write(op.offset, new Uint8Array(op.length).fill(op.pattern))
    else if (op.kind === 'zero') await device.writeZeroes(op.offset, op.length)
    else await device.discard(op.offset, op.length)
    if (op.flushAfter) {
      await device.flush()
      say(`flushed ${i}`)
    }
    i++
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv[2]!, Number(process.argv[3])).catch((e: unknown) => {
    process.stderr.write(`writer-process: ${(e as Error).stack ?? String(e)}\n`)
    process.exit(1)
  })
}
