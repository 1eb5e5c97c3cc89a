// One error type for the whole library: a code callers can switch on, a message that names the
// file, the structure, the rule broken and the offset (style: "L2 table at 0x30000: entry 17 …").

/** What went wrong, coarsely; the message says precisely. */
export type ErrorCode =
  | 'NOT_AN_IMAGE' // the bytes are not the format asked for
  | 'UNSUPPORTED' // a valid image using a feature qimg does not implement
  | 'CORRUPT' // metadata breaks a rule of the format
  | 'SHORT_READ' // storage ended before the bytes asked for
  | 'OUT_OF_RANGE' // an offset or length outside the image
  | 'READ_ONLY' // a write to an image opened read-only
  | 'NO_SUCH_SNAPSHOT'
  | 'BAD_KEY' // encrypted image: wrong passphrase, missing secret, or a damaged LUKS header
  | 'DENIED' // a file named inside an image that the caller's policy refuses to open
  | 'INVALID_ARGUMENT' // a bad option, size or command line
  | 'IO' // the operating system refused (ENOENT, EACCES, ENOSPC, …)
  | 'NOT_FOUND' // a remote image (HTTP 404/410) is not there
  | 'FORBIDDEN' // a remote server refused access (HTTP 401/403)
  | 'NO_RANGES' // a remote server does not answer byte-range requests
  | 'CHANGED' // a remote image changed while open (its ETag or Last-Modified moved)

/** Optional details carried by an {@link ImageError}. */
export interface ImageErrorOptions extends ErrorOptions {
  /** Byte offset in the file where the problem was found. */
  offset?: number
  /** File the error is about. */
  file?: string
  /**
   * QEMU 7.2's own text for this error, where it says less than the message (no file, offset or
   * rule): what the CLI prints when run as qemu-img or qemu-io, whose test suites compare it.
   */
  qemuText?: string
}

/** The only error class qimg throws on purpose. */
export class ImageError extends Error {
  override name = 'ImageError'
  readonly code: ErrorCode
  readonly offset: number | undefined
  readonly file: string | undefined
  readonly qemuText: string | undefined
  constructor(code: ErrorCode, message: string, options: ImageErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.offset = options.offset
    this.file = options.file
    this.qemuText = options.qemuText
  }
}

/** True when `e` is an {@link ImageError} (optionally with the given code). */
export function isImageError(e: unknown, code?: ErrorCode): e is ImageError {
  return e instanceof ImageError && (code === undefined || e.code === code)
}

/** Hex form used in every message that names an offset. */
export function hex(value: number): string {
  return '0x' + value.toString(16)
}
