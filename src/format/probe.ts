// Format probing as qemu-img does without -f (block.c find_image_format): every module scores
// the file's first bytes and the highest score wins; raw, scoring 1, takes what nobody claims.
import type { ReadableStorage } from '../io/storage.js'
import type { FormatModule } from './module.js'
import { formatModules } from '../formats.js'

/** QEMU's BLOCK_PROBE_BUF_SIZE: how much of the file probing looks at. */
export const PROBE_BYTES = 2048

/** Guesses the format of `storage` from its first bytes. */
export async function probeFormat(storage: ReadableStorage, modules: readonly FormatModule[] = formatModules): Promise<string> {
  const size = await storage.size()
  const head = size > 0 ? await storage.read(0, Math.min(size, PROBE_BYTES)) : new Uint8Array(0)
  let best = 'raw'
  let bestScore = 0
  for (const module of modules) {
    const score = module.probe?.(head, size, storage.name) ?? 0
    if (score > bestScore) {
      best = module.name
      bestScore = score
    }
  }
  return best
}
