// What qemu-io's commands share: the open image (its BlockBackend), how it was opened, the
// buffered stdout, and the flags the command loop reads (quit).
import type { BlockDevice } from '../../format/device.js'
import { BlkdebugStorage } from '../../io/blkdebug.js'
import { reportError, type CliContext } from '../context.js'
import type { BufferedOut } from './output.js'

/** How an image is opened (qemu-io's BDRV_O_* flags and options that matter to qimg). */
export interface OpenFlags {
  readOnly: boolean
  /** -s: writes go to a temporary overlay, dropped at close. */
  snapshot: boolean
  /** -C: reads copy backing data into the top image. */
  copyOnRead: boolean
  /** Cache mode writethrough (-t writethrough/directsync): every write is flushed. */
  writethrough: boolean
  /** O_DIRECT (-n, -t none/directsync): qimg's I/O is the same, but aio=native needs it. */
  cacheDirect: boolean
  /** aio=native (-k, -i native). */
  nativeAio: boolean
  /** -d unmap (default) or ignore: whether discard does anything. */
  discardUnmap: boolean
  forceShare: boolean
}

/** Defaults of qemu-io: read-write, writethrough, discard=unmap (BDRV_O_UNMAP). */
export function defaultOpenFlags(): OpenFlags {
  return { readOnly: false, snapshot: false, copyOnRead: false, writethrough: true, cacheDirect: false, nativeAio: false, discardUnmap: true, forceShare: false }
}

/** An open image as qemu-io holds it. */
export interface OpenImage {
  device: BlockDevice
  flags: OpenFlags
  /** Removes a -s overlay after close. */
  cleanup?: () => Promise<void>
  /** Opens the same image again with other flags (reopen -r / -w). */
  reopen?: (flags: OpenFlags) => Promise<OpenImage>
}

/** The state of one qemu-io run. */
export class Session {
  image: OpenImage | undefined
  quit = false
  /** --image-opts: file names are option strings ('open -o' is refused). */
  readonly imageOpts: boolean
  /** --object secrets, for images that need one. */
  readonly objects: readonly string[]
  readonly ctx: CliContext
  readonly #stdout: BufferedOut
  #completions = ''
  /** aio requests submitted and not yet complete (they run while later commands do). */
  readonly #inFlight = new Set<Promise<void>>()

  constructor(ctx: CliContext, stdout: BufferedOut, imageOpts: boolean, objects: readonly string[]) {
    this.ctx = ctx
    this.#stdout = stdout
    this.imageOpts = imageOpts
    this.objects = objects
  }

  /** printf to stdout (buffered). */
  out(text: string): void {
    this.#stdout.write(text)
  }

  /**
   * What an aio request prints when it completes. qemu-io prints it when its main loop next runs:
   * during the next command, or (reading standard input) after the next prompt. The text waits
   * for {@link completeRequests}.
   */
  outOnCompletion(text: string): void {
    this.#completions += text
  }

  /** Starts an aio request (it must not reject: failures are its report). */
  submit(request: Promise<void>): void {
    const tracked: Promise<void> = request.finally(() => this.#inFlight.delete(tracked))
    this.#inFlight.add(tracked)
  }

  /** Waits for every aio request, those they start included (blk_drain_all). */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight)
  }

  /**
   * Lets the aio requests run as qemu-io's main loop does while it waits for input: until each
   * completed, or one is suspended at a blkdebug breakpoint (those behind it could not go on).
   */
  async settle(): Promise<void> {
    const storage = this.image?.device.driver.storage
    if (!(storage instanceof BlkdebugStorage)) return this.drain()
    if (storage.hasSuspended) return
    await Promise.race([this.drain(), storage.nextSuspension()])
  }

  /** Prints what completed aio requests report (see {@link outOnCompletion}). */
  completeRequests(): void {
    this.#stdout.write(this.#completions)
    this.#completions = ''
  }

  /** fprintf(stderr, …): unbuffered, so it can come before stdout text printed earlier. */
  err(text: string): void {
    this.ctx.err(text)
  }

  /** error_report: "qemu-io: message" on stderr. */
  report(message: string): void {
    reportError(this.ctx, message)
  }

  flushStdout(): void {
    this.#stdout.flush()
  }

  /** The open device (commands run only with one, unless flagged otherwise). */
  get device(): BlockDevice {
    if (!this.image) throw new Error('no file open')
    return this.image.device
  }
}
