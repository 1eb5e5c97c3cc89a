// S3 objects as storage: `s3://BUCKET/KEY` names, SigV4-signed requests (aws4fetch over the
// platform's fetch and WebCrypto, so this runs in a browser too), ranged GETs pinned to the
// object's ETag (If-Match), retries of transient failures, and presigned URLs.
import { AwsClient } from 'aws4fetch'
import { ImageError } from '../errors.js'
import type { ReadableStorage } from './storage.js'

/** Where an object lives. */
export interface S3Location { bucket: string; key: string }

/** How to reach and sign for S3: what the AWS_* environment variables say. */
export interface S3Config {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string | undefined
  region: string
  /** Base URL of the service (AWS_ENDPOINT_URL); unset: AWS's regional endpoint. */
  endpoint?: string | undefined
  /** Bucket in the path (the default with an endpoint) instead of in the host name. */
  pathStyle?: boolean | undefined
  /** Attempts per request for network errors, 5xx and 429 answers (default 5). */
  attempts?: number | undefined
}

/** True for an `s3://` name. */
export function isS3Name(name: string): boolean {
  return name.startsWith('s3://')
}

/** Splits `s3://BUCKET/KEY`. */
export function parseS3Name(name: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(name)
  if (!match) throw new ImageError('INVALID_ARGUMENT', `'${name}': an S3 name is s3://BUCKET/KEY`)
  return { bucket: match[1]!, key: match[2]! }
}

/** The configuration the usual AWS_* variables describe (`env`: process.env on Node). */
export function s3ConfigFromEnv(env: Record<string, string | undefined>, name = 's3://'): S3Config {
  const accessKeyId = env['AWS_ACCESS_KEY_ID']
  const secretAccessKey = env['AWS_SECRET_ACCESS_KEY']
  if (!accessKeyId || !secretAccessKey) throw new ImageError('INVALID_ARGUMENT', `${name}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`)
  const style = env['AWS_S3_ADDRESSING_STYLE']
  return {
    accessKeyId, secretAccessKey, sessionToken: env['AWS_SESSION_TOKEN'] || undefined,
    region: env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || 'us-east-1',
    endpoint: env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined,
    pathStyle: style === 'path' ? true : style === 'virtual' ? false : undefined,
  }
}

const RETRY_DELAY_MS = 200

/** The text of an S3 error body's Code and Message elements. */
function errorDetail(body: string): string {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1]
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1]
  return [code, message].filter(Boolean).join(': ')
}

/** A signed S3 client for one configuration. */
export class S3Client {
  readonly #aws: AwsClient
  readonly #fetch: typeof fetch
  constructor(readonly config: S3Config, fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis)) {
    this.#aws = new AwsClient({ accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey, sessionToken: config.sessionToken, service: 's3', region: config.region, retries: 0 })
    this.#fetch = fetchImpl
  }

  /** The object's URL, `query` appended (names as given: `uploads`, `partNumber=1&uploadId=…`). */
  url(location: S3Location, query = ''): string {
    const key = location.key.split('/').map(encodeURIComponent).join('/')
    const base = this.config.endpoint?.replace(/\/+$/, '')
    const pathStyle = this.config.pathStyle ?? base !== undefined
    let url: string
    if (pathStyle) url = `${base ?? `https://s3.${this.config.region}.amazonaws.com`}/${encodeURIComponent(location.bucket)}/${key}`
    else if (base) url = `${base.replace('://', `://${location.bucket}.`)}/${key}`
    else url = `https://${location.bucket}.s3.${this.config.region}.amazonaws.com/${key}`
    return query ? `${url}?${query}` : url
  }

  /**
   * A signed request, repeated on network errors, 5xx and 429 (with growing delays); any other
   * answer is returned. `body` is sent as is on every attempt.
   */
  async request(location: S3Location, init: { method: string; query?: string; headers?: Record<string, string>; body?: Uint8Array | string }): Promise<Response> {
    const attempts = this.config.attempts ?? 5
    const url = this.url(location, init.query)
    for (let attempt = 1; ; attempt++) {
      let response: Response | undefined
      let failure: unknown
      try {
        const signed = await this.#aws.sign(url, { method: init.method, headers: init.headers ?? {}, ...(init.body === undefined ? {} : { body: init.body as RequestInit['body'] }) })
        response = await this.#fetch(signed)
      } catch (e) {
        failure = e
      }
      if (response && response.status < 500 && response.status !== 429) return response
      if (attempt >= attempts) {
        if (response) return response
        const message = failure instanceof Error ? (failure.cause instanceof Error ? failure.cause.message : failure.message) : String(failure)
        throw new ImageError('IO', `${s3Name(location)}: ${init.method} failed after ${attempts} attempts: ${message}`, { file: s3Name(location), cause: failure })
      }
      await response?.body?.cancel()
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * 2 ** (attempt - 1)))
    }
  }

  /** An error for an answer that is not the success expected, with the server's own words. */
  async failure(location: S3Location, what: string, response: Response): Promise<ImageError> {
    const detail = errorDetail(await response.text().catch(() => ''))
    const name = s3Name(location)
    const hint = response.status === 403 ? ' (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)' : ''
    const reason = detail || (response.status === 404 ? 'NoSuchKey' : response.statusText)
    return new ImageError('IO', `Could not ${what} '${name}': HTTP ${response.status} ${reason}${hint}`, { file: name })
  }

  /** A presigned GET URL valid for `expiresSeconds` (a browser reads it without credentials). */
  async presign(location: S3Location, expiresSeconds = 3600, method = 'GET'): Promise<string> {
    const signed = await this.#aws.sign(this.url(location, `X-Amz-Expires=${expiresSeconds}`), { method, aws: { signQuery: true } })
    return signed.url
  }
}

/** The `s3://` name of a location. */
export function s3Name(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`
}

/** Bytes per block of the small read cache: format drivers read headers and tables in small pieces. */
const CACHE_BLOCK_BYTES = 256 * 1024
const CACHE_BLOCKS = 16

/** An S3 object read by ranged GETs, the ETag it had at open required of every read. */
export class S3Storage implements ReadableStorage {
  readonly hasInfo = false
  readonly #blocks = new Map<number, Promise<Uint8Array>>()
  private constructor(readonly name: string, readonly client: S3Client, readonly location: S3Location, readonly length: number, readonly etag: string | undefined) {}

  /** HEADs the object: its size and ETag. */
  static async open(client: S3Client, location: S3Location): Promise<S3Storage> {
    const response = await client.request(location, { method: 'HEAD' })
    if (response.status !== 200) {
      // A HEAD answer has no body: the server's reason comes with a GET of one byte.
      const detail = response.status === 404 ? response : await client.request(location, { method: 'GET', headers: { range: 'bytes=0-0' } })
      throw await client.failure(location, 'open', detail.ok ? response : detail)
    }
    const length = Number(response.headers.get('content-length'))
    if (!Number.isSafeInteger(length)) throw new ImageError('IO', `Could not open '${s3Name(location)}': the server sent no object size`)
    return new S3Storage(s3Name(location), client, location, length, response.headers.get('etag') ?? undefined)
  }

  async size(): Promise<number> {
    return this.length
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || offset + length > this.length) throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${offset} past the end (${this.length} bytes)`, { file: this.name, offset })
    if (length === 0) return new Uint8Array(0)
    if (length >= CACHE_BLOCK_BYTES) return this.#get(offset, length)
    const out = new Uint8Array(length)
    for (let at = offset; at < offset + length;) {
      const index = Math.floor(at / CACHE_BLOCK_BYTES)
      const block = await this.#block(index)
      const from = at - index * CACHE_BLOCK_BYTES
      const piece = block.subarray(from, Math.min(block.length, from + offset + length - at))
      out.set(piece, at - offset)
      at += piece.length
    }
    return out
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    target.set(await this.read(offset, target.length))
  }

  #block(index: number): Promise<Uint8Array> {
    let block = this.#blocks.get(index)
    if (block) {
      this.#blocks.delete(index)
    } else {
      const start = index * CACHE_BLOCK_BYTES
      block = this.#get(start, Math.min(CACHE_BLOCK_BYTES, this.length - start))
      block.catch(() => this.#blocks.delete(index))
    }
    this.#blocks.set(index, block)
    if (this.#blocks.size > CACHE_BLOCKS) this.#blocks.delete(this.#blocks.keys().next().value!)
    return block
  }

  async #get(offset: number, length: number): Promise<Uint8Array> {
    const headers: Record<string, string> = { range: `bytes=${offset}-${offset + length - 1}` }
    if (this.etag) headers['if-match'] = this.etag
    const response = await this.client.request(this.location, { method: 'GET', headers })
    if (response.status === 412) throw new ImageError('IO', `${this.name}: the object changed while it was read (its ETag is no longer ${this.etag})`, { file: this.name, offset })
    if (response.status !== 206 && !(response.status === 200 && offset === 0 && length === this.length)) {
      if (response.status === 200) throw new ImageError('IO', `${this.name}: the server ignored the Range request`, { file: this.name, offset })
      throw await this.client.failure(this.location, 'read', response)
    }
    const bytes = new Uint8Array(await response.arrayBuffer())
    if (bytes.length !== length) throw new ImageError('SHORT_READ', `${this.name}: ${bytes.length} bytes came back for a range of ${length} at ${offset}`, { file: this.name, offset })
    return bytes
  }

  async close(): Promise<void> {
    this.#blocks.clear()
  }
}
