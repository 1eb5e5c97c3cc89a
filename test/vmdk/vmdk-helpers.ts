// VMDK images in memory for unit tests: created by the module, their files in one map that
// a memory FileHost serves (extents included), opened through the chain opener.
import { ImageError } from '../../src/errors.js'
import type { FileHost, FileReferencePolicy } from '../../src/format/chain.js'
import { openChain } from '../../src/format/chain.js'
import type { BlockDevice } from '../../src/format/device.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { nodeCodecs, nodeCompressors } from '../../src/node/codecs.js'
import { vmdkModule } from '../../src/vmdk/module.js'

/** Files by path; storages are shared, so writes through one open are seen by the next. */
export class MemoryFiles {
  readonly files = new Map<string, MemoryStorage>()
  readonly opened: string[] = []

  storage(path: string): MemoryStorage {
    let s = this.files.get(path)
    if (!s) {
      s = new MemoryStorage(new Uint8Array(0), path)
      this.files.set(path, s)
    }
    return s
  }

  bytes(path: string): Uint8Array {
    const s = this.files.get(path)
    if (!s) throw new Error(`no file ${path}`)
    return s.bytes()
  }

  put(path: string, bytes: Uint8Array): void {
    this.files.set(path, new MemoryStorage(bytes.slice(), path))
  }

  /** A host whose storages survive `close` (a memory file is its storage). */
  host(): FileHost {
    return {
      open: async (path) => {
        this.opened.push(path)
        const s = this.files.get(path)
        if (!s) throw new ImageError('IO', `Could not open '${path}': No such file or directory`, { file: path })
        return keepOpen(s)
      },
      canonical: async (path) => path,
    }
  }
}

/** The storage with a close that does nothing (the bytes stay for the next open). */
function keepOpen(s: MemoryStorage): MemoryStorage {
  return new Proxy(s, {
    get(target, key) {
      if (key === 'close') return async () => {}
      const value = Reflect.get(target, key, target) as unknown
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
}

/** Creates `path` as vmdk with `options` (-o) in `files`. */
export async function createVmdk(files: MemoryFiles, path: string, size: number, options: Record<string, string> = {}): Promise<void> {
  await vmdkModule.create!({
    storage: keepOpen(files.storage(path)), size, options: new Map(Object.entries(options)), secret: undefined, crypto: undefined, compressors: undefined,
    createFile: async (p) => keepOpen(files.storage(p)),
    openFile: async (name) => keepOpen(files.storage(name)),
  })
}

/** Opens `path` as vmdk (with its chain) over `files`. */
export function openVmdk(files: MemoryFiles, path: string, options: { writable?: boolean; fileReferences?: FileReferencePolicy } = {}): Promise<BlockDevice> {
  return openChain(keepOpen(files.storage(path)), {
    format: 'vmdk', host: files.host(), codecs: nodeCodecs, compressors: nodeCompressors,
    writable: options.writable ?? false, fileReferences: options.fileReferences ?? 'follow',
  })
}

/** Writes a little-endian value into `bytes`. */
export function pokeLE(bytes: Uint8Array, offset: number, value: number | bigint, width: 2 | 4 | 8): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  if (width === 2) view.setUint16(offset, Number(value), true)
  else if (width === 4) view.setUint32(offset, Number(value), true)
  else view.setBigUint64(offset, BigInt(value), true)
}
