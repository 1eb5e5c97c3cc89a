// The metadata log (MS-VHDX §2.3): finding the active sequence and replaying it on open, as
// QEMU's vhdx-log.c does (vhdx_log_search, vhdx_log_flush), and writing qimg's own metadata
// updates through it (vhdx_log_write_and_flush), so a kill at any point leaves either the old
// metadata or a log that replays to the new.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import { writeZeroes } from '../io/storage.js'
import { qemuOpenText } from './fail.js'
import { HeaderPair, randomGuid, readPadded } from './headers.js'
import {
  LOG_ENTRY_HEADER_SIZE, assembleSector, crcContinue, dataSectorSequence, decodeLogDescriptor, decodeLogEntryHeader, descriptorSectors,
  encodeLogEntry, logDescriptorIsValid, logHeaderIsValid, type LogEntryHeader,
} from './log-entry.js'
import { LOG_MIN_SIZE, LOG_SECTOR_SIZE, MIB, ZERO_GUID } from './spec.js'

/** The active sequence found by the search: `count` entries from log index `start`. */
export interface LogSequence {
  start: number
  count: number
  firstSequence: bigint
  /** Log index after the last entry. */
  end: number
}

/** Reads log sectors by their byte index inside the log (zeros past the end of the file). */
class LogSectors {
  constructor(readonly storage: ReadableStorage, readonly offset: number, readonly length: number, readonly fileSize: number) {}
  read(index: number): Promise<Uint8Array> {
    return readPadded(this.storage, this.offset + index, LOG_SECTOR_SIZE, this.fileSize)
  }
  next(index: number): number {
    const n = index + LOG_SECTOR_SIZE
    return n >= this.length ? 0 : n
  }
}

function logError(file: string, rule: string, offset: number, qemu = 'Invalid argument'): ImageError {
  return new ImageError('CORRUPT', `${file}: VHDX log: ${rule}`, { file, offset, qemuText: qemuOpenText(file, qemu) })
}

/** The descriptor sectors of the entry at `index`, validated (a bad descriptor fails the open, as in QEMU). */
async function readDescriptors(log: LogSectors, index: number, h: LogEntryHeader): Promise<{ area: Uint8Array; after: number }> {
  const sectors = descriptorSectors(h.descriptorCount)
  // Bounded: descriptorCount * 32 <= entryLength <= the log's length, which lies inside the file.
  const area = new Uint8Array(sectors * LOG_SECTOR_SIZE)
  let at = index
  for (let i = 0; i < sectors; i++) {
    area.set(await log.read(at), i * LOG_SECTOR_SIZE)
    at = log.next(at)
  }
  for (let i = 0; i < h.descriptorCount; i++) {
    if (!logDescriptorIsValid(decodeLogDescriptor(area, i), h)) {
      throw logError(log.storage.name, `entry at log offset ${hex(index)} (sequence ${h.sequenceNumber}): descriptor ${i} has a bad signature, sequence number or alignment`, log.offset + index)
    }
  }
  return { area, after: at }
}

/** vhdx_validate_log_entry: the entry at `index` if valid (and following `previous` when that is set), and where the search goes on. */
async function validateEntry(log: LogSectors, index: number, previous: bigint, logGuid: string): Promise<{ header: LogEntryHeader | undefined; next: number }> {
  const header = decodeLogEntryHeader(await log.read(index))
  if (!logHeaderIsValid(header, log.length, logGuid) || (previous > 0n && header.sequenceNumber !== previous + 1n)) return { header: undefined, next: log.next(index) }
  const { area, after } = await readDescriptors(log, index, header)
  const zeroed = area.slice()
  zeroed.fill(0, 4, 8)
  let crc = crcContinue(0, zeroed)
  let at = after
  const total = header.entryLength / LOG_SECTOR_SIZE
  for (let i = descriptorSectors(header.descriptorCount); i < total; i++) {
    crc = crcContinue(crc, await log.read(at))
    at = log.next(at)
  }
  return { header: crc === header.checksum ? header : undefined, next: at }
}

/**
 * vhdx_log_search: every sector is tried as an entry start; a valid entry and the valid entries
 * after it form a sequence; the sequence whose first entry has the highest sequence number wins.
 * As in QEMU the second entry of a sequence is taken whatever its number.
 */
export async function searchLog(log: LogSectors, logGuid: string): Promise<LogSequence | undefined> {
  let best: LogSequence | undefined
  let read = 0
  // Every step advances by at least a sector; the bound keeps a hostile log from looping.
  let budget = 4 * (log.length / LOG_SECTOR_SIZE) + 16
  for (;;) {
    const tail = read
    const first = await validateEntry(log, read, 0n, logGuid)
    read = first.next
    if (first.header) {
      const current: LogSequence = { start: tail, count: 1, firstSequence: first.header.sequenceNumber, end: read }
      let previous = 0n
      for (;;) {
        if (--budget < 0) throw logError(log.storage.name, 'the log entries form a cycle', log.offset)
        const more = await validateEntry(log, read, previous, logGuid)
        read = more.next
        if (!more.header) break
        current.end = read
        current.count++
        previous = more.header.sequenceNumber
      }
      if (!best || current.firstSequence > best.firstSequence) best = current
    }
    if (read < tail || --budget < 0) break
  }
  return best
}

/** The log's place and whether it needs replaying (vhdx_parse_log up to the search). */
export async function findActiveLog(storage: ReadableStorage, headers: HeaderPair, fileSize: number): Promise<{ log: LogSectors; sequence: LogSequence | undefined }> {
  const h = headers.active
  const file = storage.name
  if (h.logOffset < LOG_MIN_SIZE || h.logOffset % LOG_MIN_SIZE !== 0) throw logError(file, `the log offset ${hex(h.logOffset)} is not a multiple of 1 MiB past the header section`, h.logOffset)
  if (h.logVersion !== 0) throw logError(file, `log version ${h.logVersion} is not 0`, h.logOffset)
  const log = new LogSectors(storage, h.logOffset, h.logLength, fileSize)
  if (h.logGuid === ZERO_GUID || h.logLength === 0) return { log, sequence: undefined }
  if (h.logLength % LOG_MIN_SIZE !== 0) throw logError(file, `the log length ${h.logLength} is not a multiple of 1 MiB`, h.logOffset)
  // qimg's rule: a log to replay lies inside the file (QEMU reads zeros past the end).
  if (h.logOffset + h.logLength > fileSize) throw logError(file, `the log at ${hex(h.logOffset)} (${h.logLength} bytes) runs past the end of the file (${hex(fileSize)})`, h.logOffset)
  return { log, sequence: await searchLog(log, h.logGuid) }
}

/** qimg's bound on how far a log entry may grow the file. */
const MAX_LOG_GROWTH = 1024 * MIB

/**
 * vhdx_log_flush: each entry's descriptors written to their file offsets (data sectors put
 * back together, zero descriptors as zeros), the file grown to the entry's last file offset,
 * then the log marked empty (both headers with a zero log GUID).
 */
export async function replayLog(storage: Storage, headers: HeaderPair, log: LogSectors, sequence: LogSequence): Promise<void> {
  const file = storage.name
  await headers.updateBoth(storage, true)
  let read = sequence.start
  for (let n = 0; n < sequence.count; n++) {
    const header = decodeLogEntryHeader(await log.read(read))
    const fileSize = await storage.size()
    if (header.flushedFileOffset > fileSize) throw logError(file, `entry at log offset ${hex(read)}: its flushed file offset ${hex(header.flushedFileOffset)} is past the end of the file (${hex(fileSize)}): the file was truncated`, log.offset + read)
    if (!logHeaderIsValid(header, log.length, headers.active.logGuid)) throw logError(file, `entry at log offset ${hex(read)} is no longer valid`, log.offset + read)
    const limit = Math.max(fileSize, header.lastFileOffset)
    if (header.lastFileOffset > fileSize + MAX_LOG_GROWTH) throw logError(file, `entry at log offset ${hex(read)}: its last file offset ${hex(header.lastFileOffset)} is more than 1 GiB past the end of the file (${hex(fileSize)})`, log.offset + read)
    const { area, after } = await readDescriptors(log, read, header)
    read = after
    for (let i = 0; i < header.descriptorCount; i++) {
      const d = decodeLogDescriptor(area, i)
      const length = d.signature === 'desc' ? LOG_SECTOR_SIZE : d.zeroLength
      if (d.fileOffset + length > limit) throw logError(file, `entry sequence ${header.sequenceNumber}: descriptor ${i} writes ${length} bytes at ${hex(d.fileOffset)}, past the end of the file (${hex(limit)})`, log.offset + read)
      if (d.fileOffset < LOG_MIN_SIZE) throw logError(file, `entry sequence ${header.sequenceNumber}: descriptor ${i} writes at ${hex(d.fileOffset)}, inside the header section`, log.offset + read)
      if (d.signature === 'desc') {
        const sector = await log.read(read)
        read = log.next(read)
        if (dataSectorSequence(sector) !== d.sequenceNumber) throw logError(file, `entry sequence ${header.sequenceNumber}: the data sector of descriptor ${i} carries sequence ${dataSectorSequence(sector)}`, log.offset + read)
        await storage.write(d.fileOffset, assembleSector(d, sector))
      } else {
        await writeZeroes(storage, d.fileOffset, d.zeroLength)
      }
    }
    // QEMU grows the file to the last file offset rounded up to 1 MiB (only when it was not a multiple).
    if ((await storage.size()) < header.lastFileOffset && header.lastFileOffset % MIB !== 0) await storage.truncate(Math.ceil(header.lastFileOffset / MIB) * MIB)
  }
  await storage.flush()
  await headers.updateBoth(storage, false, ZERO_GUID)
}

/** Writes metadata sectors through the log (qimg's writes; QEMU's vhdx_log_write_and_flush). */
export class LogWriter {
  #sequence: bigint
  readonly #headers: HeaderPair
  readonly #random: (n: number) => Uint8Array

  constructor(headers: HeaderPair, nextSequence: bigint, random: (n: number) => Uint8Array) {
    this.#headers = headers
    this.#sequence = nextSequence > 0n ? nextSequence : 1n
    this.#random = random
  }

  /**
   * Data first (flushed), then a new log GUID in the headers, the entry at the log's start
   * (flushed), the sectors in place (flushed), and the log marked empty again. Updates too many
   * for one entry go in several.
   */
  async write(storage: Storage, sectors: readonly { fileOffset: number; bytes: Uint8Array }[]): Promise<void> {
    const h = this.#headers.active
    // One sector of the log stays open (vhdx-log.c's full-buffer rule); each entry has at least one descriptor sector.
    const perEntry = Math.max(1, Math.floor((h.logLength / LOG_SECTOR_SIZE - 1) * 127 / 128) - 1)
    if (h.logLength < 2 * LOG_SECTOR_SIZE) throw new ImageError('UNSUPPORTED', `${storage.name}: the VHDX log (${h.logLength} bytes) is too small to write metadata through`, { file: storage.name, qemuText: 'Invalid argument' })
    for (let at = 0; at < sectors.length; at += perEntry) await this.#entry(storage, sectors.slice(at, at + perEntry))
  }

  async #entry(storage: Storage, sectors: readonly { fileOffset: number; bytes: Uint8Array }[]): Promise<void> {
    await storage.flush()
    const guid = randomGuid(this.#random)
    await this.#headers.updateBoth(storage, false, guid)
    const size = await storage.size()
    const entry = encodeLogEntry({ sequenceNumber: this.#sequence, tail: 0, logGuid: guid, flushedFileOffset: size, lastFileOffset: size, sectors })
    this.#sequence++
    await storage.write(this.#headers.active.logOffset, entry)
    await storage.flush()
    for (const s of sectors) await storage.write(s.fileOffset, s.bytes)
    await storage.flush()
    await this.#headers.updateBoth(storage, false, ZERO_GUID)
  }
}

export { LogSectors, LOG_ENTRY_HEADER_SIZE }
