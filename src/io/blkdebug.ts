// blkdebug (QEMU block/blkdebug.c): a storage decorator that fails requests on purpose. Format
// drivers raise events at the points QEMU's drivers call BLKDBG_EVENT (l2_load, refblock_alloc,
// flush_to_disk, …) through the optional `debugEvent` of their storage; a rule on an event
// arms an error that hits the next requests of the kinds it names. Used to test error paths.
import { ImageError } from '../errors.js'
import { errnoName, errnoText } from './errno.js'
import { type BlkdebugEvent, type BlkdebugIoType, type BlkdebugRule, type InjectErrorRule } from './blkdebug-rules.js'
import { isWritable, type ReadableStorage, type Storage } from './storage.js'

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
  /** Writes went through since the last flush that succeeded (bdrv_co_flush's write_gen check). */
  #unflushed = false

  constructor(image: ReadableStorage, rules: readonly BlkdebugRule[]) {
    this.#image = image
    this.name = image.name
    for (const rule of rules) {
      const list = this.#rules.get(rule.event) ?? []
      list.unshift(rule)
      this.#rules.set(rule.event, list)
    }
    this.debugEvent('none') // blkdebug_open ends with bdrv_debug_event(bs, BLKDBG_NONE)
  }

  /** blkdebug_debug_event: rules of `event` for the current state arm errors or change state. */
  debugEvent(event: BlkdebugEvent): void {
    const rules = this.#rules.get(event)
    if (!rules) return
    let newState = this.#state
    let injected = 0
    for (const rule of [...rules]) {
      if (rule.state !== 0 && rule.state !== this.#state) continue
      if (rule.action === 'set-state') {
        newState = rule.newState
      } else {
        // The first inject-error rule of an event replaces the armed set (QSIMPLEQ_INIT).
        if (injected++ === 0) this.#active = []
        this.#active.unshift(rule)
      }
    }
    this.#state = newState
  }

  /** rule_check: the first armed rule covering the request fails it; a `once` rule is then gone. */
  #check(offset: number, length: number, ioType: BlkdebugIoType): void {
    const rule = this.#active.find((r) => r.ioTypes.has(ioType) && (r.offset === -1 || (length > 0 && r.offset >= offset && r.offset < offset + length)))
    if (!rule || rule.errno === 0) return
    if (rule.once) {
      this.#active = this.#active.filter((r) => r !== rule)
      const list = this.#rules.get(rule.event)!
      list.splice(list.indexOf(rule), 1)
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
    this.debugEvent('pwritev')
    this.#unflushed = true
    this.#check(offset, data.length, 'write')
    await this.#writable().write(offset, data)
    this.debugEvent('pwritev_done')
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
