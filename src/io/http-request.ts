// One HTTP byte-range request with the checks a disk image needs: the server must answer 206
// with the range asked for (RFC 9110 §14.4 Content-Range), the object must not change while it
// is open (its ETag, or Last-Modified, and length stay the same), and transient failures
// (network errors, 408/429/5xx) are retried a few times with a growing pause.
import { ImageError, hex } from '../errors.js'

/** Extra request headers for one range request (an S3 signer adds its own here). */
export type RequestHeaders = (url: URL, range: string) => Record<string, string> | Promise<Record<string, string>>

/** How requests are made; every field has a default. */
export interface HttpRequestOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch | undefined
  /** Headers added to every request (authorization, a signer). */
  headers?: Record<string, string> | RequestHeaders | undefined
  /** Attempts after the first for transient failures (default 3). */
  retries?: number | undefined
  /** First pause before a retry in milliseconds, doubled each time (default 200). */
  retryDelayMs?: number | undefined
}

/** What a range response says about the object. */
export interface RangeAnswer {
  bytes: Uint8Array
  /** Length of the whole object (from Content-Range). */
  totalSize: number
  /** ETag, else Last-Modified, else undefined: what must not change. */
  validator: string | undefined
}

/** A range the server refused as unsatisfiable (416): the object's length, when it says. */
export class UnsatisfiableRange {
  constructor(readonly totalSize: number | undefined, readonly validator: string | undefined) {}
}

const RETRY_STATUS = new Set([408, 425, 429, 500, 502, 503, 504])

function statusError(url: URL, response: Response): ImageError {
  const file = url.href
  const text = `${file}: HTTP ${response.status}${response.statusText ? ' ' + response.statusText : ''}`
  // QEMU's curl driver: "CURL: Error opening file: The requested URL returned error: 404 Not Found"
  const qemuText = `CURL: Error opening file: The requested URL returned error: ${response.status}${response.statusText ? ' ' + response.statusText : ''}`
  if (response.status === 404 || response.status === 410) return new ImageError('NOT_FOUND', `${text}: no such image`, { file, qemuText })
  if (response.status === 401 || response.status === 403) return new ImageError('FORBIDDEN', `${text}: access refused`, { file, qemuText })
  return new ImageError('IO', text, { file, qemuText })
}

function validatorOf(response: Response): string | undefined {
  return response.headers.get('etag') ?? response.headers.get('last-modified') ?? undefined
}

/** Parses `bytes FIRST-LAST/TOTAL` (or `bytes * /TOTAL`); undefined when malformed. */
export function parseContentRange(value: string | null): { first: number; last: number; total: number | undefined } | { total: number | undefined } | undefined {
  if (value === null) return undefined
  const unsatisfied = /^bytes \*\/(\d+)$/.exec(value.trim())
  if (unsatisfied) return { total: Number(unsatisfied[1]) }
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim())
  if (!m) return undefined
  return { first: Number(m[1]), last: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) }
}

async function headersFor(options: HttpRequestOptions, url: URL, range: string): Promise<Record<string, string>> {
  const extra = typeof options.headers === 'function' ? await options.headers(url, range) : options.headers ?? {}
  return { ...extra, range }
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * GETs `length` bytes at `offset` (fewer at the end of the object); the answer is checked to be
 * the range asked for. Throws NO_RANGES for a server that answers 200 (the whole object).
 */
export async function fetchRange(url: URL, offset: number, length: number, options: HttpRequestOptions): Promise<RangeAnswer | UnsatisfiableRange> {
  const doFetch = options.fetch ?? globalThis.fetch
  const retries = options.retries ?? 3
  const range = `bytes=${offset}-${offset + length - 1}`
  for (let attempt = 0; ; attempt++) {
    let response: Response
    try {
      response = await doFetch(url, { headers: await headersFor(options, url, range) })
    } catch (cause) {
      if (attempt < retries) { await pause((options.retryDelayMs ?? 200) * 2 ** attempt); continue }
      throw new ImageError('IO', `${url.href}: request for ${range} failed: ${(cause as Error).message}`, { file: url.href, offset, cause })
    }
    if (RETRY_STATUS.has(response.status) && attempt < retries) {
      await response.body?.cancel().catch(() => undefined)
      await pause((options.retryDelayMs ?? 200) * 2 ** attempt)
      continue
    }
    return answer(url, offset, length, response)
  }
}

async function answer(url: URL, offset: number, length: number, response: Response): Promise<RangeAnswer | UnsatisfiableRange> {
  const file = url.href
  if (response.status === 416) {
    await response.body?.cancel().catch(() => undefined)
    return new UnsatisfiableRange(parseContentRange(response.headers.get('content-range'))?.total, validatorOf(response))
  }
  if (response.status === 200) {
    await response.body?.cancel().catch(() => undefined)
    throw new ImageError('NO_RANGES', `${file}: the server answered a byte-range request with the whole object (HTTP 200); images are read by ranges only`, {
      file, qemuText: "CURL: Error opening file: Server does not support 'range' (byte ranges).",
    })
  }
  if (response.status !== 206) {
    await response.body?.cancel().catch(() => undefined)
    throw statusError(url, response)
  }
  const contentRange = parseContentRange(response.headers.get('content-range'))
  const bytes = new Uint8Array(await response.arrayBuffer())
  if (!contentRange || !('first' in contentRange) || contentRange.total === undefined) {
    throw new ImageError('NO_RANGES', `${file}: a 206 answer without a usable Content-Range (${response.headers.get('content-range') ?? 'none'})`, { file, offset })
  }
  const got = contentRange.last - contentRange.first + 1
  if (contentRange.first !== offset || got > length || got !== bytes.length || (got < length && contentRange.last !== contentRange.total - 1)) {
    throw new ImageError('IO', `${file}: asked for ${length} bytes at ${hex(offset)}, the server sent ${bytes.length} bytes as ${response.headers.get('content-range')}`, { file, offset })
  }
  return { bytes, totalSize: contentRange.total, validator: validatorOf(response) }
}
