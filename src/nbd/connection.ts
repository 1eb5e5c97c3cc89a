// The transmission phase of one NBD connection (nbd/server.c nbd_trip, nbd_co_receive_request,
// nbd_handle_request): requests are read one after another and run concurrently, replies go
// out as each finishes (out of order, as the protocol allows). At most MAX_NBD_REQUESTS run at
// once and at most `inFlightBytes` of payload and read buffers are held, so memory is bounded
// whatever the client sends; a request past a limit waits until earlier ones are answered.
import { allocUninitialized, isZero, viewOf } from '../binary/bytes.js'
import { readExact, type NbdChannel } from './channel.js'
import {
  MAX_NBD_REQUESTS, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL, NBD_ENOTSUP, NBD_FLAG_READ_ONLY, NBD_MAX_BLOCK_STATUS_EXTENTS, NBD_MAX_BUFFER_SIZE, NBD_META_ID_ALLOCATION_DEPTH,
  NBD_META_ID_BASE_ALLOCATION, NBD_META_ID_DIRTY_BITMAP, NBD_REQUEST_SIZE, NBD_SIMPLE_REPLY_SIZE, commandName,
} from './constants.js'
import { nbdErrorOf } from './errors.js'
import { allocationDepthExtents, baseAllocationExtents, bitmapExtents } from './block-status.js'
import type { SparseRun } from '../format/device.js'
import type { NbdExport } from './export.js'
import { encodeString } from './handshake.js'
import type { Negotiated } from './negotiate.js'
import {
  CHUNK_DATA_HEADER_SIZE, decodeRequest, encodeChunkBlockStatus, encodeChunkData, encodeChunkDone, encodeChunkError, encodeChunkHole, encodeSimpleReply,
  type Request, type StatusExtent,
} from './transmission.js'

/** Bytes of payload and read buffers one connection may hold at once (one maximal request always fits). */
export const DEFAULT_IN_FLIGHT_BYTES = 64 * 1024 * 1024

/** A reply could not be sent, or the client broke the protocol: the connection ends. */
class Disconnect extends Error {}

/** A command that failed: the NBD error and QEMU's message for it. */
class CommandError extends Error {
  constructor(readonly nbdError: number, message: string) {
    super(message)
  }
}

export interface ConnectionOptions {
  inFlightBytes?: number
  /** Told why a connection ended abnormally (qemu-nbd -v prints it). */
  log?: (message: string) => void
}

/** Serves requests until the client disconnects or {@link stop} is called. */
export class NbdConnection {
  readonly #channel: NbdChannel
  readonly #session: Negotiated
  readonly #export: NbdExport
  readonly #limitBytes: number
  readonly #log: (message: string) => void
  /** Requests running, each with its task (keyed by the request: one object per request received). */
  readonly #running = new Map<Request, Promise<void>>()
  #heldBytes = 0
  #stopping = false
  /** Wakes the receive loop when a request finishes. */
  #wake: (() => void) | undefined

  constructor(session: Negotiated, options: ConnectionOptions = {}) {
    this.#session = session
    this.#channel = session.channel
    this.#export = session.export
    this.#limitBytes = Math.max(options.inFlightBytes ?? DEFAULT_IN_FLIGHT_BYTES, NBD_MAX_BUFFER_SIZE)
    this.#log = options.log ?? (() => undefined)
  }

  /** Requests running now (for tests and shutdown). */
  get inFlight(): number {
    return this.#running.size
  }

  /** Runs the receive loop; resolves when the connection is over and every request answered. */
  async serve(): Promise<void> {
    try {
      await this.#receiveLoop()
    } catch (e) {
      if (!this.#stopping) this.#log(`Disconnect client, due to: ${(e as Error).message}`)
    } finally {
      await this.#settle()
      this.#channel.close()
    }
  }

  /** Stops reading requests; those running finish and are answered, then the channel closes. */
  async stop(): Promise<void> {
    this.#stopping = true
    await this.#settle()
    this.#channel.close()
  }

  async #settle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running.values()])
  }

  /** Whether a request of `bytes` fits the limits now. */
  #fits(bytes: number): boolean {
    return this.#running.size < MAX_NBD_REQUESTS && (this.#heldBytes === 0 || this.#heldBytes + bytes <= this.#limitBytes)
  }

  /** Waits until a request of `bytes` fits the limits, then holds them. */
  async #admit(bytes: number): Promise<void> {
    while (!this.#fits(bytes)) await new Promise<void>((resolve) => { this.#wake = resolve })
    this.#heldBytes += bytes
  }

  /** Runs a request: it counts as running (and holds `bytes`) until answered. */
  #start(bytes: number, request: Request, payload: Uint8Array | undefined, invalid: string | undefined): void {
    this.#running.set(request, this.#task(bytes, request, payload, invalid))
  }

  async #task(bytes: number, request: Request, payload: Uint8Array | undefined, invalid: string | undefined): Promise<void> {
    try {
      // Never settles before #start has added it: the first await always yields.
      if (invalid !== undefined) await this.#replyError(request, NBD_EINVAL, invalid)
      else await this.#handle(request, payload)
    } catch (e) {
      // A reply that cannot be sent ends the connection (QEMU: "Failed to send reply").
      this.#log(`Disconnect client, due to: Failed to send reply: ${(e as Error).message}`)
      this.#stopping = true
      this.#channel.close()
    } finally {
      this.#running.delete(request)
      this.#heldBytes -= bytes
      const wake = this.#wake
      this.#wake = undefined
      wake?.()
    }
  }

  async #receiveLoop(): Promise<void> {
    const channel = this.#channel
    while (!this.#stopping) {
      if (!this.#fits(0)) await this.#admit(0)
      if (this.#stopping) return
      // Requests already buffered are taken without a promise each (clients pipeline them).
      const header = channel.readBuffered?.(NBD_REQUEST_SIZE) ?? await channel.read(NBD_REQUEST_SIZE)
      if (!header || this.#stopping) return
      const request = decodeRequest(header)
      if (!request.magicOk) throw new Disconnect(`invalid magic (got 0x${viewOf(header).getUint32(0).toString(16)})`)
      // DISC: no reply, whatever its fields say; what runs is finished first.
      if (request.type === NBD_CMD_DISC) return
      const carriesBuffer = request.type === NBD_CMD_READ || request.type === NBD_CMD_WRITE
      if ((carriesBuffer || request.type === NBD_CMD_CACHE) && request.length > NBD_MAX_BUFFER_SIZE) {
        const message = `len (${request.length} ) is larger than max len (${NBD_MAX_BUFFER_SIZE})`
        await this.#replyError(request, NBD_EINVAL, message)
        // A write's payload was not read: the stream cannot be followed any more.
        if (request.type === NBD_CMD_WRITE) throw new Disconnect('Request handling failed in intermediate state')
        continue
      }
      const bytes = carriesBuffer ? request.length : 0
      // Held from here until the request is answered (#task gives them back).
      if (this.#fits(bytes)) this.#heldBytes += bytes
      else await this.#admit(bytes)
      let payload: Uint8Array | undefined
      try {
        if (request.type === NBD_CMD_WRITE) payload = channel.readBuffered?.(request.length) ?? await readExact(channel, request.length, 'CMD_WRITE data')
      } catch (e) {
        this.#heldBytes -= bytes
        throw e
      }
      this.#start(bytes, request, payload, this.#check(request))
    }
  }

  /** nbd_co_receive_request's sanity checks: a message when the request is refused. */
  #check(request: Request): string | undefined {
    const exp = this.#export
    const writes = request.type === NBD_CMD_WRITE || request.type === NBD_CMD_WRITE_ZEROES || request.type === NBD_CMD_TRIM
    if (writes && exp.transmissionFlags & NBD_FLAG_READ_ONLY) return 'Export is read-only'
    if (request.offset > exp.size || request.length > exp.size - request.offset) {
      return `operation past EOF; From: ${BigIntText(request.offset)}, Len: ${request.length}, Size: ${exp.size}`
    }
    let valid = NBD_CMD_FLAG_FUA
    if (request.type === NBD_CMD_READ && this.#session.structuredReply) valid |= NBD_CMD_FLAG_DF
    else if (request.type === NBD_CMD_WRITE_ZEROES) valid |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO
    else if (request.type === NBD_CMD_BLOCK_STATUS) valid |= NBD_CMD_FLAG_REQ_ONE
    if (request.flags & ~valid) return `unsupported flags for command ${commandName(request.type)} (got 0x${request.flags.toString(16)})`
    return undefined
  }

  async #handle(request: Request, payload: Uint8Array | undefined): Promise<void> {
    try {
      await this.#run(request, payload)
    } catch (e) {
      if (e instanceof CommandError) return this.#replyError(request, e.nbdError, e.message)
      throw e
    }
  }

  /** Runs a device operation; a failure becomes the command's error reply with `message`. */
  async #device<T>(message: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op()
    } catch (e) {
      throw this.#failed(message, e)
    }
  }

  /** A device failure as the command's error (logged with `message`, as QEMU's -v prints it). */
  #failed(message: string, e: unknown): CommandError {
    if (e instanceof CommandError) return e
    this.#log(`${message}: ${(e as Error).message}`)
    return new CommandError(nbdErrorOf(e), message)
  }

  async #flushIf(flag: boolean): Promise<void> {
    if (flag) await this.#device('flush failed', () => this.#export.device.flush())
  }

  async #run(request: Request, payload: Uint8Array | undefined): Promise<void> {
    const exp = this.#export
    const device = exp.device
    const fua = (request.flags & NBD_CMD_FLAG_FUA) !== 0
    switch (request.type) {
      case NBD_CMD_READ:
        // QEMU flushes before a read with FUA (the protocol documents FUA for writes only).
        await this.#flushIf(fua)
        return this.#read(request)
      case NBD_CMD_WRITE: {
        const data = payload!
        await this.#device('writing to file failed', async () => {
          if (exp.detectZeroes !== 'off' && isZero(data)) await device.writeZeroes(request.offset, data.length, { unmap: exp.detectZeroes === 'unmap' })
          else await device.write(request.offset, data)
        })
        await this.#flushIf(fua || exp.writethrough)
        return this.#replyOk(request)
      }
      case NBD_CMD_WRITE_ZEROES: {
        // MAY_UNMAP unless NO_HOLE; honoured only with --discard=unmap (BDRV_O_UNMAP).
        const unmap = (request.flags & NBD_CMD_FLAG_NO_HOLE) === 0 && exp.discard === 'unmap'
        if (request.flags & NBD_CMD_FLAG_FAST_ZERO && !(await this.#zeroIsFast(request.offset, request.length))) {
          throw new CommandError(NBD_ENOTSUP, 'writing to file failed')
        }
        await this.#device('writing to file failed', () => device.writeZeroes(request.offset, request.length, { unmap }))
        await this.#flushIf(fua || exp.writethrough)
        return this.#replyOk(request)
      }
      case NBD_CMD_FLUSH:
        await this.#device('flush failed', () => device.flush())
        return this.#replyOk(request)
      case NBD_CMD_TRIM:
        // --discard=ignore (qemu-nbd's default) makes a discard succeed doing nothing.
        if (exp.discard === 'unmap') {
          await this.#device('discard failed', () => device.discard(request.offset, request.length))
          }
        await this.#device('discard failed', async () => { if (fua) await device.flush() })
        return this.#replyOk(request)
      case NBD_CMD_CACHE:
        // A prefetch hint: the device keeps no data cache that reading ahead would fill, so
        // the advice is taken by answering at once, which the protocol allows.
        return this.#replyOk(request)
      case NBD_CMD_BLOCK_STATUS:
        return this.#blockStatus(request)
      default:
        throw new CommandError(NBD_EINVAL, `invalid request type (${request.type}) received`)
    }
  }

  /**
   * Whether zeroing is cheap (BDRV_REQ_NO_FALLBACK): true for formats without clusters, and for
   * clustered ones when the partial clusters at either end already read as zeros (else qcow2
   * would have to write zeros there, and answers ENOTSUP).
   */
  async #zeroIsFast(offset: number, length: number): Promise<boolean> {
    const device = this.#export.device
    const cluster = device.clusterSize
    if (cluster === undefined || length === 0) return true
    const end = offset + length
    const pieces: [number, number][] = []
    if (offset % cluster !== 0) pieces.push([offset, Math.min(end, Math.ceil(offset / cluster) * cluster)])
    if (end % cluster !== 0 && end !== device.size) pieces.push([Math.max(offset, Math.floor(end / cluster) * cluster), end])
    for (const [from, to] of pieces) {
      for (let at = from; at < to;) {
        const status = await device.blockStatus(at, to - at)
        if (!status.zero) return false
        at += status.length
      }
    }
    return true
  }

  async #read(request: Request): Promise<void> {
    const { offset, length, handle } = request
    const device = this.#export.device
    const structured = this.#session.structuredReply
    if (structured && !(request.flags & NBD_CMD_FLAG_DF) && length > 0) {
      // nbd_co_send_sparse_read: runs that read as zeros go as hole chunks. The data is read
      // right behind room for its chunk header, so a read answered by one run (the usual case)
      // costs one lookup, one buffer and one piece to send.
      const reply = allocUninitialized(CHUNK_DATA_HEADER_SIZE + length)
      const data = reply.subarray(CHUNK_DATA_HEADER_SIZE)
      const run: SparseRun = { length: 0, zero: false, reading: false }
      for (let done = 0; done < length;) {
        const at = offset + done
        try {
          await device.readRun(data.subarray(done), at, run)
        } catch (e) {
          throw this.#failed(run.reading ? 'reading from file failed' : 'unable to check for holes', e)
        }
        const final = done + run.length === length
        if (run.zero) {
          await this.#channel.write([encodeChunkHole(handle, at, run.length, final)])
        } else if (done === 0) {
          encodeChunkData(handle, at, run.length, final, reply)
          await this.#channel.write([reply.subarray(0, CHUNK_DATA_HEADER_SIZE + run.length)])
        } else {
          await this.#channel.write([encodeChunkData(handle, at, run.length, final), data.subarray(done, done + run.length)])
        }
        done += run.length
      }
      return
    }
    if (structured && length === 0) return this.#channel.write([encodeChunkDone(handle)])
    const headerSize = structured ? CHUNK_DATA_HEADER_SIZE : NBD_SIMPLE_REPLY_SIZE
    const reply = allocUninitialized(headerSize + length)
    await this.#device('reading from file failed', () => device.readInto(reply.subarray(headerSize), offset))
    if (structured) encodeChunkData(handle, offset, length, true, reply)
    else encodeSimpleReply(0, handle, reply)
    return this.#channel.write([reply])
  }

  async #blockStatus(request: Request): Promise<void> {
    if (request.length === 0) throw new CommandError(NBD_EINVAL, 'need non-zero length')
    const contexts = this.#session.meta?.contexts ?? []
    if (contexts.length === 0) throw new CommandError(NBD_EINVAL, 'CMD_BLOCK_STATUS not negotiated')
    const maxExtents = request.flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_BLOCK_STATUS_EXTENTS
    const exp = this.#export
    for (let i = 0; i < contexts.length; i++) {
      const { id } = contexts[i]!
      let extents: StatusExtent[]
      if (id === NBD_META_ID_BASE_ALLOCATION) {
        extents = await this.#device("can't get block status", () => baseAllocationExtents(exp.device, request.offset, request.length, maxExtents))
      } else if (id === NBD_META_ID_ALLOCATION_DEPTH) {
        extents = await this.#device("can't get block status", () => allocationDepthExtents(exp.device, request.offset, request.length, maxExtents))
      } else {
        extents = bitmapExtents(exp.bitmaps[id - NBD_META_ID_DIRTY_BITMAP]!, request.offset, request.length, maxExtents)
      }
      await this.#channel.write([encodeChunkBlockStatus(request.handle, id, extents, i === contexts.length - 1)])
    }
  }

  async #replyOk(request: Request): Promise<void> {
    await this.#channel.write([encodeSimpleReply(0, request.handle)])
  }

  /** nbd_send_generic_reply for an error: structured error chunk, or a simple reply. */
  async #replyError(request: Request, error: number, message: string): Promise<void> {
    if (this.#session.structuredReply) await this.#channel.write([encodeChunkError(request.handle, error, encodeString(message))])
    else await this.#channel.write([encodeSimpleReply(error, request.handle)])
  }
}

/** An offset as QEMU prints it (PRIu64); offsets above 2^53 were decoded approximately. */
function BigIntText(value: number): string {
  return Number.isSafeInteger(value) ? String(value) : BigInt(Math.round(value)).toString()
}
