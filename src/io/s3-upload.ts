// S3 multipart upload (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
// AbortMultipartUpload): parts sent in any order, several in flight, each retried by the client;
// on failure the upload is aborted, so no partial object is ever left under the key.
import { ImageError } from '../errors.js'
import { s3Name, type S3Client, type S3Location } from './s3.js'

/** S3's smallest part, except for the last (S3 API "UploadPart"). */
export const MIN_PART_BYTES = 5 * 1024 * 1024
/** S3's largest part number. */
export const MAX_PARTS = 10000

/** Bytes per part for an object of at most `maxBytes`: 8 MiB, more when 10000 parts would not hold it. */
export function partBytesFor(maxBytes: number): number {
  const mib = 1024 * 1024
  return Math.max(8 * mib, Math.ceil(maxBytes / (MAX_PARTS - 1) / mib) * mib)
}

/** One multipart upload under way. */
export class MultipartUpload {
  readonly #etags = new Map<number, string>()
  readonly #inFlight = new Set<Promise<void>>()
  #failure: unknown
  #finished = false
  private constructor(readonly client: S3Client, readonly location: S3Location, readonly uploadId: string, readonly parallel: number) {}

  /** Starts an upload to `location`; `parallel` parts may be in flight at once. */
  static async start(client: S3Client, location: S3Location, parallel = 4): Promise<MultipartUpload> {
    const response = await client.request(location, { method: 'POST', query: 'uploads' })
    if (response.status !== 200) throw await client.failure(location, 'start an upload to', response)
    const id = /<UploadId>([^<]+)<\/UploadId>/.exec(await response.text())?.[1]
    if (!id) throw new ImageError('IO', `${s3Name(location)}: the server started an upload without an UploadId`)
    return new MultipartUpload(client, location, id, Math.max(1, parallel))
  }

  get name(): string {
    return s3Name(this.location)
  }

  /**
   * Sends part `partNumber` (1…10000) in the background; resolves once fewer than `parallel`
   * parts are in flight (the caller may then reuse nothing of `data` until complete()). Rejects
   * with the first failure of any part.
   */
  async put(partNumber: number, data: Uint8Array): Promise<void> {
    this.#check()
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) throw new ImageError('INVALID_ARGUMENT', `${this.name}: part number ${partNumber} is outside 1…${MAX_PARTS}`)
    const sending = this.#send(partNumber, data).catch((e: unknown) => {
      this.#failure ??= e
    })
    this.#inFlight.add(sending)
    void sending.finally(() => this.#inFlight.delete(sending))
    while (this.#inFlight.size >= this.parallel) await Promise.race(this.#inFlight)
    this.#check()
  }

  async #send(partNumber: number, data: Uint8Array): Promise<void> {
    const query = `partNumber=${partNumber}&uploadId=${encodeURIComponent(this.uploadId)}`
    const response = await this.client.request(this.location, { method: 'PUT', query, body: data })
    if (response.status !== 200) throw await this.client.failure(this.location, `upload part ${partNumber} of`, response)
    await response.body?.cancel()
    const etag = response.headers.get('etag')
    if (!etag) throw new ImageError('IO', `${this.name}: the server accepted part ${partNumber} without an ETag`)
    this.#etags.set(partNumber, etag)
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure
    if (this.#finished) throw new ImageError('INVALID_ARGUMENT', `${this.name}: the upload has ended`)
  }

  /** Waits for every part, then makes the object of the parts in part-number order. */
  async complete(): Promise<void> {
    await Promise.all(this.#inFlight)
    this.#check()
    this.#finished = true
    const parts = [...this.#etags].sort((a, b) => a[0] - b[0])
    const xml = `<CompleteMultipartUpload>${parts.map(([n, etag]) => `<Part><PartNumber>${n}</PartNumber><ETag>${etag.replace(/"/g, '&quot;')}</ETag></Part>`).join('')}</CompleteMultipartUpload>`
    const response = await this.client.request(this.location, { method: 'POST', query: `uploadId=${encodeURIComponent(this.uploadId)}`, body: xml })
    const body = await response.text()
    // S3 may answer 200 and report the failure in the body (S3 API "CompleteMultipartUpload").
    if (response.status !== 200 || body.includes('<Error>')) throw await this.client.failure(this.location, 'complete the upload of', new Response(body, { status: response.status === 200 ? 500 : response.status }))
  }

  /**
   * Discards the parts sent: no object is made. By default after the parts in flight end (S3
   * may otherwise keep one that was being stored); `now` does not wait (a process being killed).
   */
  async abort(now = false): Promise<void> {
    this.#finished = true
    if (!now) await Promise.all(this.#inFlight)
    const response = await this.client.request(this.location, { method: 'DELETE', query: `uploadId=${encodeURIComponent(this.uploadId)}` })
    await response.body?.cancel()
    if (response.status !== 204 && response.status !== 200 && response.status !== 404) throw await this.client.failure(this.location, 'abort the upload of', response)
  }
}

/**
 * Runs `work` over an upload to `location` and completes it; any failure (or `signal` aborting)
 * aborts the upload and rethrows, so the key never holds a partial object.
 */
export async function withUpload<T>(client: S3Client, location: S3Location, parallel: number, work: (upload: MultipartUpload) => Promise<T>, started?: (upload: MultipartUpload) => void): Promise<T> {
  const upload = await MultipartUpload.start(client, location, parallel)
  started?.(upload)
  try {
    const result = await work(upload)
    await upload.complete()
    return result
  } catch (e) {
    await upload.abort().catch(() => undefined)
    throw e
  }
}
