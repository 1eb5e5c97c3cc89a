// The internal snapshot table ("Snapshot table" in qcow2.rst): decode with QEMU's limits.
import { decodeText, getU64, viewOf } from '../binary/bytes.js'
import { struct } from '../binary/struct.js'
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { MAX_SNAPSHOTS, MAX_SNAPSHOT_EXTRA_DATA, MAX_SNAPSHOT_TABLE_BYTES, SNAPSHOT_HEADER_LENGTH } from './spec.js'

/** Fixed part of a snapshot table entry. */
export const SNAPSHOT_HEADER = struct({
  l1TableOffset: [0, 'u64'],
  l1Size: [8, 'u32'],
  idSize: [12, 'u16'],
  nameSize: [14, 'u16'],
  dateSec: [16, 'u32'],
  dateNsec: [20, 'u32'],
  vmClockNsec: [24, 'u64'],
  vmStateSize: [32, 'u32'],
  extraDataSize: [36, 'u32'],
})

/** One decoded snapshot. */
export interface Snapshot {
  l1TableOffset: number
  l1Size: number
  id: string
  name: string
  dateSec: number
  dateNsec: number
  vmClockNsec: number
  /** VM state size: the 64-bit extra-data field when present, else the 32-bit one. */
  vmStateSize: number
  /** Virtual disk size when the snapshot was taken; undefined when not recorded. */
  diskSize: number | undefined
  /** Instruction count; undefined when not recorded or -1 (record/replay off). */
  icount: number | undefined
  /** Extra data exactly as stored (kept when the table is rewritten). */
  extraData: Uint8Array
}

/** Reads bytes of the table on demand, in chunks, never past the table size cap. */
class ChunkReader {
  #bytes = new Uint8Array(0)
  constructor(readonly storage: ReadableStorage, readonly base: number, readonly fileSize: number) {}
  async get(offset: number, length: number): Promise<Uint8Array> {
    if (offset + length > MAX_SNAPSHOT_TABLE_BYTES) {
      throw new ImageError('CORRUPT', `${this.storage.name}: snapshot table at ${hex(this.base)} is larger than ${MAX_SNAPSHOT_TABLE_BYTES} bytes`, { offset: this.base })
    }
    if (offset + length > this.#bytes.length) {
      const want = Math.min(Math.max(offset + length, this.#bytes.length * 2, 65536), MAX_SNAPSHOT_TABLE_BYTES, this.fileSize - this.base)
      if (want < offset + length) {
        throw new ImageError('CORRUPT', `${this.storage.name}: snapshot table at ${hex(this.base)} runs past end of file`, { offset: this.base + offset })
      }
      const more = await this.storage.read(this.base + this.#bytes.length, want - this.#bytes.length)
      const next = new Uint8Array(want)
      next.set(this.#bytes)
      next.set(more, this.#bytes.length)
      this.#bytes = next
    }
    return this.#bytes.subarray(offset, offset + length)
  }
}

/** Runs a field decode, turning a u64 above 2^53 (OUT_OF_RANGE from getU64) into CORRUPT at `where`. */
function decodeFields<T>(decode: () => T, where: string, offset: number, file: string): T {
  try {
    return decode()
  } catch (cause) {
    if (cause instanceof ImageError && cause.code === 'OUT_OF_RANGE') throw new ImageError('CORRUPT', `${where}: ${cause.message}`, { offset, file, cause })
    throw cause
  }
}

/** Loads and decodes `count` snapshot entries starting at `tableOffset`. */
export async function loadSnapshotTable(storage: ReadableStorage, tableOffset: number, count: number, version: number, clusterSize: number): Promise<Snapshot[]> {
  const file = storage.name
  if (count === 0) return []
  if (count > MAX_SNAPSHOTS) throw new ImageError('CORRUPT', `${file}: snapshot count ${count} exceeds ${MAX_SNAPSHOTS}`, { offset: 60 })
  if (tableOffset % clusterSize !== 0 || tableOffset === 0) throw new ImageError('CORRUPT', `${file}: snapshot table offset ${hex(tableOffset)} is not a cluster-aligned offset after the header`, { offset: 64 })
  const reader = new ChunkReader(storage, tableOffset, await storage.size())
  const snapshots: Snapshot[] = []
  const ids = new Set<string>()
  let offset = 0
  for (let i = 0; i < count; i++) {
    const where = `snapshot ${i} at ${hex(tableOffset + offset)}`
    const fields = <T>(decode: () => T): T => decodeFields(decode, `${file}: ${where}`, tableOffset + offset, file)
    const headBytes = await reader.get(offset, SNAPSHOT_HEADER_LENGTH)
    const head = fields(() => SNAPSHOT_HEADER.decode(viewOf(headBytes)))
    if (head.extraDataSize > MAX_SNAPSHOT_EXTRA_DATA) throw new ImageError('CORRUPT', `${file}: ${where}: extra data of ${head.extraDataSize} bytes exceeds ${MAX_SNAPSHOT_EXTRA_DATA}`, { offset: tableOffset + offset })
    if (version >= 3 && head.extraDataSize < 16) throw new ImageError('CORRUPT', `${file}: ${where}: v3 snapshot has ${head.extraDataSize} bytes of extra data (at least 16)`, { offset: tableOffset + offset })
    if (head.l1TableOffset % clusterSize !== 0) throw new ImageError('CORRUPT', `${file}: ${where}: L1 table offset ${hex(head.l1TableOffset)} is not cluster aligned`, { offset: tableOffset + offset })
    const body = await reader.get(offset + SNAPSHOT_HEADER_LENGTH, head.extraDataSize + head.idSize + head.nameSize)
    const extraData = body.slice(0, head.extraDataSize)
    const extra = viewOf(extraData)
    const id = decodeText(body.subarray(head.extraDataSize, head.extraDataSize + head.idSize))
    const name = decodeText(body.subarray(head.extraDataSize + head.idSize))
    if (ids.has(id)) throw new ImageError('CORRUPT', `${file}: ${where}: snapshot ID '${id}' is not unique`, { offset: tableOffset + offset })
    ids.add(id)
    const icountRaw = extraData.length >= 24 ? extra.getBigInt64(16) : -1n
    snapshots.push({
      l1TableOffset: head.l1TableOffset,
      l1Size: head.l1Size,
      id,
      name,
      dateSec: head.dateSec,
      dateNsec: head.dateNsec,
      vmClockNsec: head.vmClockNsec,
      vmStateSize: extraData.length >= 8 ? fields(() => getU64(extra, 0, 'vm state size')) : head.vmStateSize,
      diskSize: extraData.length >= 16 ? fields(() => getU64(extra, 8, 'snapshot disk size')) : undefined,
      icount: icountRaw < 0n ? undefined : Number(icountRaw),
      extraData,
    })
    offset = Math.ceil((offset + SNAPSHOT_HEADER_LENGTH + body.length) / 8) * 8
  }
  return snapshots
}

/** Finds a snapshot as qemu-img does: by ID first, then by name. */
export function findSnapshot(snapshots: readonly Snapshot[], key: { id?: string; name?: string } | string): Snapshot | undefined {
  if (typeof key === 'string') return snapshots.find((s) => s.id === key) ?? snapshots.find((s) => s.name === key)
  return snapshots.find((s) => (key.id === undefined || s.id === key.id) && (key.name === undefined || s.name === key.name))
}
