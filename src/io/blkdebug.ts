// blkdebug (QEMU block/blkdebug.c): a storage decorator that fails requests on purpose. Format
// drivers raise events at the points QEMU's drivers call BLKDBG_EVENT (l2_load, refblock_alloc,
// flush_to_disk, …) through the optional `debugEvent` of their storage; a rule on an event
// arms an error that hits the next requests of the kinds it names. Used to test error paths.
// Breakpoints (qemu-io's break/resume) suspend the request that raises their event until resumed.
import { ImageError } from '../errors.js'
import { errnoName, errnoText } from './errno.js'
import { BLKDEBUG_EVENTS, type BlkdebugEvent, type BlkdebugIoType, type BlkdebugRule, type InjectErrorRule, type SuspendRule } from './blkdebug-rules.js'
import { discardPieces, MAX_BOUNCE_BYTES, writeZeroesPieces, type RequestLimits } from './request-limits.js'
import { isWritable, writeZeroBytes, type ReadableStorage, type Storage } from './storage.js'

/** An error injected by blkdebug (code IO; `errno` says which). */
export function injectedError(errno: number, file: string): ImageError {
  const error = new ImageError('IO', errnoText(errno), { file, cause: { code: errnoName(errno) } })
  ;(error as ImageError & { errno?: number }).errno = errno
  return error
}

/** The blkdebug node over `image` (its "image" child). */
export class BlkdebugStorage implements Storage {
  readonly name: string
  readonly #image: ReadableStorage
  /** Rules per event, the last added first (QLIST_INSERT_HEAD). */
  readonly #rules = new Map<BlkdebugEvent, BlkdebugRule[]>()
  /** Armed inject-error rules, checked in order on every request. */
  #active: InjectErrorRule[] = []
  #state = 1
  /** Requests suspended at a breakpoint, the last first (QLIST_INSERT_HEAD). */
  #suspended: { tag: string; resume: () => void }[] = []
  /** Told whenever a request is suspended (qemu-io's wait_break polls for it). */
  #onSuspend: (() => void)[] = []
  /** Where "blkdebug: Suspended request …" lines go (QEMU's printf to stdout); none: not shown. */
  print: ((text: string) => void) | undefined
  /** Writes went through since the last flush that succeeded (bdrv_co_flush's write_gen check). */
  #unflushed = false

  /** The node's request limits, when options set zero-write or discard ones (else requests pass whole). */
  readonly #limits: RequestLimits | undefined

  constructor(image: ReadableStorage, rules: readonly BlkdebugRule[], limits?: RequestLimits) {
    this.#image = image
    this.#limits = limits
    this.name = image.name
    for (const rule of rules) {
      const list = this.#rules.get(rule.event) ?? []
      list.unshift(rule)
      this.#rules.set(rule.event, list)
    }
    this.debugEvent('none') // blkdebug_open ends with bdrv_debug_event(bs, BLKDBG_NONE)
  }

  /**
   * blkdebug_debug_event: rules of `event` for the current state arm errors, change state, or
   * suspend the request (then the result settles once each breakpoint hit is resumed).
   */
  debugEvent(event: BlkdebugEvent): void | Promise<void> {
    const rules = this.#rules.get(event)
    if (!rules) return
    let newState = this.#state
    let injected = 0
    const suspensions: Promise<void>[] = []
    for (const rule of [...rules]) {
      if (rule.state !== 0 && rule.state !== this.#state) continue
      if (rule.action === 'set-state') {
        newState = rule.newState
      } else if (rule.action === 'suspend') {
        suspensions.push(this.#suspend(rule))
      } else {
        // The first inject-error rule of an event replaces the armed set (QSIMPLEQ_INIT).
        if (injected++ === 0) this.#active = []
        this.#active.unshift(rule)
      }
    }
    this.#state = newState
    if (suspensions.length > 0) return Promise.all(suspensions).then(() => undefined)
  }

  /** suspend_request: the breakpoint is used up; the request waits for resume(tag). */
  #suspend(rule: SuspendRule): Promise<void> {
    this.#removeRule(rule)
    return new Promise((resolve) => {
      this.#suspended.unshift({ tag: rule.tag, resume: resolve })
      this.print?.(`blkdebug: Suspended request '${rule.tag}'\n`)
      for (const notify of this.#onSuspend.splice(0)) notify()
    })
  }

  #removeRule(rule: BlkdebugRule): void {
    const list = this.#rules.get(rule.event)!
    list.splice(list.indexOf(rule), 1)
  }

  /** blkdebug_debug_breakpoint: a breakpoint on the event named `eventName` (ENOENT when none is). */
  addBreakpoint(eventName: string, tag: string): void {
    const event = BLKDEBUG_EVENTS.find((e) => e === eventName)
    if (!event) throw injectedError(2, this.name)
    const list = this.#rules.get(event) ?? []
    list.unshift({ action: 'suspend', event, state: 0, tag })
    this.#rules.set(event, list)
  }

  /**
   * blkdebug_debug_remove_breakpoint: drops the breakpoints tagged `tag` and resumes its
   * requests; false when no breakpoint was left (resume_req_by_tag with `all` answers ENOENT
   * even after resuming, so resumed requests alone do not count, as in QEMU 7.2).
   */
  removeBreakpoint(tag: string): boolean {
    let found = false
    for (const list of this.#rules.values()) {
      for (const rule of [...list]) if (rule.action === 'suspend' && rule.tag === tag) (this.#removeRule(rule), (found = true))
    }
    while (this.resume(tag));
    return found
  }

  /** resume_req_by_tag: resumes the last request suspended as `tag`; false when there is none. */
  resume(tag: string): boolean {
    const index = this.#suspended.findIndex((r) => r.tag === tag)
    if (index < 0) return false
    const [request] = this.#suspended.splice(index, 1)
    this.print?.(`blkdebug: Resuming request '${tag}'\n`)
    request!.resume()
    return true
  }

  /** Whether some request waits at a breakpoint. */
  get hasSuspended(): boolean {
    return this.#suspended.length > 0
  }

  /** Settles at the next suspension. */
  nextSuspension(): Promise<void> {
    return new Promise((resolve) => this.#onSuspend.push(resolve))
  }

  /** Settles once a request is suspended as `tag` (qemu-io's wait_break). */
  async waitForSuspension(tag: string): Promise<void> {
    while (!this.#suspended.some((r) => r.tag === tag)) await this.nextSuspension()
  }

  /** rule_check: the first armed rule covering the request fails it; a `once` rule is then gone. */
  #check(offset: number, length: number, ioType: BlkdebugIoType): void {
    const rule = this.#active.find((r) => r.ioTypes.has(ioType) && (r.offset === -1 || (length > 0 && r.offset >= offset && r.offset < offset + length)))
    if (!rule || rule.errno === 0) return
    if (rule.once) {
      this.#active = this.#active.filter((r) => r !== rule)
      this.#removeRule(rule)
    }
    throw injectedError(rule.errno, this.name)
  }

  #writable(): Storage {
    if (!isWritable(this.#image)) throw new ImageError('READ_ONLY', `${this.name}: storage is not writable`, { file: this.name })
    return this.#image
  }

  size(): Promise<number> {
    return this.#image.size()
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#check(offset, length, 'read')
    return this.#image.read(offset, length)
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.#check(offset, target.length, 'read')
    if (this.#image.readInto) await this.#image.readInto(offset, target)
    else target.set(await this.#image.read(offset, target.length))
  }

  async holeStatus(offset: number, length: number): Promise<{ hole: boolean; length: number }> {
    this.#check(offset, length, 'block-status')
    return this.#image.holeStatus ? this.#image.holeStatus(offset, length) : { hole: false, length }
  }

  /** bdrv_aligned_pwritev raises pwritev (pwritev_zero for zeroes) before, pwritev_done after. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.debugEvent('pwritev')
    this.#unflushed = true
    this.#check(offset, data.length, 'write')
    await this.#writable().write(offset, data)
    this.debugEvent('pwritev_done')
  }

  /** A zero write (BDRV_REQ_ZERO_WRITE): pwritev_zero before, pwritev_done after. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.debugEvent('pwritev_zero')
    this.#unflushed = true
    this.#check(offset, length, 'write-zeroes')
    const image = this.#writable()
    const limits = this.#limits
    if (limits && (limits.writeZeroesAlignment || limits.maxWriteZeroes)) {
      // blkdebug_co_pwrite_zeroes refuses pieces below the preferred alignment (-ENOTSUP), so
      // the block layer writes zeros there, at most max_transfer at a time.
      const bounce = Math.min(limits.maxTransfer || MAX_BOUNCE_BYTES, length)
      let zeros: Uint8Array | undefined
      for (const piece of writeZeroesPieces(offset, length, limits)) {
        if (!piece.small) {
          await this.#zeroChild(image, piece.offset, piece.length)
          continue
        }
        // One bounce buffer of zeros for every fallback piece (bdrv_co_do_pwrite_zeroes keeps it).
        zeros ??= new Uint8Array(bounce)
        for (let at = 0; at < piece.length; at += bounce) {
          const bytes = Math.min(bounce, piece.length - at)
          this.#check(piece.offset + at, bytes, 'write')
          await image.write(piece.offset + at, zeros.subarray(0, bytes))
        }
      }
    } else {
      await this.#zeroChild(image, offset, length)
    }
    this.debugEvent('pwritev_done')
  }

  async #zeroChild(image: Storage, offset: number, length: number): Promise<void> {
    if (image.writeZeroes) await image.writeZeroes(offset, length)
    else await writeZeroBytes(image, offset, length)
  }

  /** bdrv_co_pdiscard passes the discard down to the image child. */
  async discard(offset: number, length: number): Promise<boolean> {
    this.#unflushed = true
    const limits = this.#limits
    if (!limits || !(limits.discardAlignment || limits.maxDiscard)) {
      this.#check(offset, length, 'discard')
      return (await this.#writable().discard?.(offset, length)) ?? false
    }
    // blkdebug_co_pdiscard passes on pieces of at least request_alignment, ignores the rest.
    let done = false
    for (const piece of discardPieces(offset, length, limits)) {
      if (piece.small) continue
      this.#check(piece.offset, piece.length, 'discard')
      if (await this.#writable().discard?.(piece.offset, piece.length)) done = true
    }
    return done
  }

  async flush(): Promise<void> {
    if (!this.#unflushed) return
    this.#check(0, 0, 'flush')
    await this.#writable().flush()
    this.#unflushed = false
  }

  async truncate(length: number): Promise<void> {
    this.#unflushed = true
    await this.#writable().truncate(length)
  }

  close(): Promise<void> {
    return this.#image.close()
  }
}
