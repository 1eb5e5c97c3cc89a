// A FileHost over in-memory files for chain tests: serves only the files it was given and
// records every name it was asked to open (a spy for "never opened" assertions).
import { ImageError } from '../../src/errors.js'
import type { FileHost } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'

/** A FileHost over `files` (path → bytes) that logs each `open` in `opened`. */
export interface MemoryHost extends FileHost {
  readonly opened: string[]
}

/** Makes a {@link MemoryHost}; unknown paths fail like a missing file. */
export function memoryHost(files: Record<string, Uint8Array>): MemoryHost {
  const opened: string[] = []
  return {
    opened,
    async open(path) {
      opened.push(path)
      const bytes = files[path]
      if (bytes === undefined) throw new ImageError('IO', `Could not open '${path}': No such file or directory`, { file: path })
      return new MemoryStorage(bytes, path)
    },
    async canonical(path) {
      return path
    },
  }
}
