// openImage where JavaScript runs without Node: an image from a Blob or File, an http(s) URL,
// or any storage, with the codecs and crypto in JavaScript/WebAssembly. Node's openImage
// (node/open.ts) takes the same sources and file paths besides.
import { openChain, type FileHost, type OpenChainOptions } from '../format/chain.js'
import type { BlockDevice } from '../format/device.js'
import { BlobStorage, isBlob } from '../io/blob.js'
import { HttpStorage } from '../io/http.js'
import type { ReadableStorage } from '../io/storage.js'
import { portableCodecs, portableCompressors } from './codecs.js'
import { jsCrypto } from './crypto.js'
import { urlFileHost, type UrlHostOptions } from './url-host.js'

/** What an image can be opened from. */
export type ImageSource = string | URL | Blob | ReadableStorage

/** Options for the portable {@link openImage}. */
export type PortableOpenOptions = OpenChainOptions & {
  /** Requests, cache and the backing-name policy for images opened by URL. */
  http?: UrlHostOptions | undefined
}

/** The storage of a Blob, a URL or a storage object, and the host for the names it contains. */
export async function openSource(target: ImageSource, http: UrlHostOptions = {}): Promise<{ storage: ReadableStorage; host: FileHost | undefined }> {
  if (isBlob(target)) return { storage: new BlobStorage(target), host: undefined }
  if (typeof target === 'string' || target instanceof URL) {
    const base = (globalThis as { location?: { href: string } }).location?.href
    return { storage: await HttpStorage.open(new URL(target, base), http), host: urlFileHost(http) }
  }
  return { storage: target, host: undefined }
}

/**
 * Opens an image (a `Blob`/`File`, an http(s) URL, or a storage) with its backing chain for
 * reading; backing files of a URL are fetched from beside it. Close it with `close()`.
 */
export async function openImage(target: ImageSource, options: PortableOpenOptions = {}): Promise<BlockDevice> {
  const { http, ...rest } = options
  const { storage, host } = await openSource(target, http)
  try {
    return await openChain(storage, { codecs: portableCodecs, compressors: portableCompressors, crypto: jsCrypto, host, ...rest })
  } catch (e) {
    await storage.close().catch(() => undefined)
    throw e
  }
}
