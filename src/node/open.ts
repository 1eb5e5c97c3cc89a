// The Node entry point for opening images: files through node:fs, realpath for loop detection,
// Node's codecs (deflate, zstd) on the calling thread by default, or on a worker pool's threads.
import { realpath } from 'node:fs/promises'
import { openChain, pathCombine, type FileHost, type OpenChainOptions } from '../format/chain.js'
import type { BlockDevice } from '../format/device.js'
import { FileStorage } from '../io/file.js'
import { isOvaName, openOvaDisk } from '../ova/ova.js'
import { openSource, type ImageSource } from '../portable/open.js'
import { isHttpUrl, urlFileHost, type UrlHostOptions } from '../portable/url-host.js'
import { nodeCodecs, nodeCompressors } from './codecs.js'
import { nodeCrypto } from './crypto.js'
import type { CodecPool } from './pool.js'

/** Options for {@link openImage}. */
export type OpenImageOptions = Omit<OpenChainOptions, 'host'> & {
  host?: FileHost | undefined
  /** 'unsafe' skips fsync on flush of the image file (qemu-img's -t unsafe); default 'writeback'. */
  cache?: 'writeback' | 'unsafe' | undefined
  /**
   * Run (de)compression of every layer on this pool's worker threads instead of the calling
   * thread: worth it for bulk reads of compressed images (convert, compare), where many clusters
   * are decoded at once. Explicit `codecs` / `compressors` take precedence. The pool starts its
   * threads on the first compressed cluster, and the caller closes it after the image.
   */
  pool?: CodecPool | undefined
  /** Requests, cache and the backing-name policy for images opened by http(s) URL. */
  http?: UrlHostOptions | undefined
}

/** Where an open's own messages go by default (QEMU prints them on stderr). */
export const stderrReport = (line: string): void => {
  process.stderr.write(line + '\n')
}

const urlHost = urlFileHost()

/**
 * Opens files read-only through node:fs, and the files of an image opened by http(s) URL by
 * URL (names resolved against it, as QEMU's curl driver names its backing files).
 */
export const nodeFileHost: FileHost = {
  open: (path, options) => isHttpUrl(path) ? urlHost.open(path, options) : FileStorage.open(path, options),
  canonical: (path) => isHttpUrl(path) ? urlHost.canonical(path) : realpath(path),
  resolve: (base, name) => isHttpUrl(base) ? urlHost.resolve!(base, name) : pathCombine(base, name),
}

/** Chain options with node's defaults: files, codecs (or the pool's), node:crypto, stderr reports. */
export function nodeChainOptions(options: OpenImageOptions): OpenChainOptions {
  const { pool, http: _http, ...rest } = options
  const codecs = options.codecs ?? pool?.decompressors() ?? nodeCodecs
  const compressors = options.compressors ?? pool?.compressors() ?? nodeCompressors
  return { host: nodeFileHost, ...rest, codecs, compressors, crypto: options.crypto ?? nodeCrypto, report: options.report ?? stderrReport }
}

/**
 * Opens an image (a path, an http(s) URL, a Blob or a storage) with its backing chain for
 * reading. Close it with `close()`. Files named inside the image are opened only when
 * `fileReferences` is 'follow' (the default); pass 'deny' for untrusted images. The backing
 * files of an image opened by URL are fetched from beside it (portable/url-host.ts).
 */
export async function openImage(target: ImageSource, options: OpenImageOptions = {}): Promise<BlockDevice> {
  const { storage: opened, host } = typeof target === 'string' && !isHttpUrl(target)
    ? { storage: await FileStorage.open(target, { writable: options.writable ?? false, sync: options.cache !== 'unsafe' }), host: undefined }
    : await openSource(target, options.http)
  let storage = opened
  try {
    // Beyond qemu-img: an OVA (a tar) opened as the disk inside it, read-only, without -f or with -f vmdk.
    if (typeof target === 'string' && isOvaName(target) && !options.writable && (options.format ?? 'vmdk') === 'vmdk') storage = await openOvaDisk(storage)
    const chainOptions = nodeChainOptions(options)
    return await openChain(storage, host && !options.host ? { ...chainOptions, host } : chainOptions)
  } catch (e) {
    await storage.close().catch(() => undefined)
    throw e
  }
}

export { describeLayer } from '../format/describe.js'
