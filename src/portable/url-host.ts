// Files named inside an image opened by URL: relative names resolve against the image's URL
// (RFC 3986 §5), under the same policy as names on disk — a backing file on another origin, or
// an absolute path on the server, is refused unless the caller allows it. (Names with a
// protocol, "https://…", are protocol specifications and refused before this: chain.ts.)
import { ImageError } from '../errors.js'
import type { FileHost } from '../format/chain.js'
import { pathCombine } from '../format/path-combine.js'
import { HttpStorage, type HttpStorageOptions } from '../io/http.js'

/** Options of {@link urlFileHost}. */
export interface UrlHostOptions extends HttpStorageOptions {
  /** Let an image name an absolute path on its server ("/images/base.qcow2"). */
  allowAbsolutePaths?: boolean | undefined
  /** Let an image name another origin ("//mirror.example/base.qcow2"). */
  allowOtherOrigins?: boolean | undefined
}

/** True for an http(s) URL string. */
export function isHttpUrl(name: string): boolean {
  return /^https?:\/\//i.test(name)
}

/** Opens images by URL and resolves the names they contain against their own URL. */
export function urlFileHost(options: UrlHostOptions = {}): FileHost {
  return {
    open: (path) => HttpStorage.open(path, options),
    canonical: async (path) => new URL(path).href,
    resolve(base, name) {
      const refuse = (why: string): never => {
        throw new ImageError('DENIED', `${base}: the image names '${name}', ${why}; opening it is not allowed`, { file: base })
      }
      const baseUrl = new URL(base)
      const otherOrigin = name.startsWith('//') || name.startsWith('\\\\')
      if (otherOrigin && !options.allowOtherOrigins) refuse('a file on another server')
      if (!otherOrigin && (name.startsWith('/') || name.startsWith('\\')) && !options.allowAbsolutePaths) refuse('an absolute path')
      const url = new URL(name, baseUrl)
      if (url.origin !== baseUrl.origin && !options.allowOtherOrigins) refuse(`a file on ${url.origin}`)
      // A relative name is joined as QEMU's path_combine joins it ("…/chain/../base.qcow2", the
      // name qemu-img shows); the request normalizes it.
      return otherOrigin || name.startsWith('/') || name.startsWith('\\') ? url.href : pathCombine(base, name)
    },
  }
}
