// S3 objects as storage: `s3://BUCKET/KEY` names, SigV4-signed requests (aws4fetch over the
// platform's fetch and WebCrypto, so this runs in a browser too), ranged reads through the HTTP
// storage (its cache and ETag check), retries of transient failures, and presigned URLs.
import { AwsClient } from 'aws4fetch'
import { ImageError, isImageError } from '../errors.js'
import { HttpStorage } from './http.js'
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

  /** fetch with every request signed (for {@link HttpStorage}). */
  readonly signedFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    return this.#fetch(await this.#aws.sign(input instanceof URL ? input.href : input, init))
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
    const code = response.status === 403 || response.status === 401 ? 'FORBIDDEN' : response.status === 404 ? 'NOT_FOUND' : 'IO'
    return new ImageError(code, `Could not ${what} '${name}': HTTP ${response.status} ${reason}${hint}`, { file: name })
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

/**
 * An S3 object read through {@link HttpStorage} (its block cache, read-ahead, parallel ranged
 * GETs and ETag check), every request signed; named by its s3:// name.
 */
export class S3Storage implements ReadableStorage {
  readonly hasInfo = false
  private constructor(readonly name: string, readonly http: HttpStorage) {}

  /** Opens the object (one signed GET of its first block: size and ETag). */
  static async open(client: S3Client, location: S3Location): Promise<S3Storage> {
    const name = s3Name(location)
    let http: HttpStorage
    try {
      http = await HttpStorage.open(client.url(location), { fetch: client.signedFetch, retries: (client.config.attempts ?? 5) - 1 })
    } catch (e) {
      // The server's own reason (SignatureDoesNotMatch, NoSuchBucket…) is in the error body.
      if (!isImageError(e, 'FORBIDDEN') && !isImageError(e, 'NOT_FOUND')) throw e
      throw await client.failure(location, 'open', await client.request(location, { method: 'GET', headers: { range: 'bytes=0-0' } }))
    }
    return new S3Storage(name, http)
  }

  size(): Promise<number> {
    return this.http.size()
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.http.read(offset, length)
  }

  close(): Promise<void> {
    return this.http.close()
  }
}
