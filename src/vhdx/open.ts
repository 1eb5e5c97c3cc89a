// vhdx_open: the file signature, the header pair, the log (replayed when writable, refused
// read-only as QEMU refuses), the region table, the metadata and the BAT, with QEMU's checks
// in QEMU's order and qimg's own rules for hostile files (regions and blocks inside the file,
// never over each other).
import { ImageError, hex } from '../errors.js'
import { isWritable, type ReadableStorage } from '../io/storage.js'
import { HeaderPair, defaultRandom, readPadded } from './headers.js'
import { LogWriter, findActiveLog, replayLog } from './log.js'
import { readMetadata, type VhdxMetadata } from './metadata.js'
import { openError } from './fail.js'
import {
  BAT_GUID, FILE_SIGNATURE, HEADER_SECTION_END, METADATA_GUID, REGION_TABLE1_OFFSET, REGION_TABLE_MAX_ENTRIES, REGION_TABLE_SIZE, checksumIsValid,
} from './spec.js'
import { decodeRegionEntry, decodeRegionTableHeader, type RegionEntry } from './structures.js'
import { Bat, batEntryCount, overlapping } from './bat.js'

export interface VhdxLayout {
  fileSize: number
  headers: HeaderPair
  /** Regions registered (log, BAT, metadata): blocks must not overlap them (vhdx_region_check). */
  regions: { start: number; end: number; what: string }[]
  batRegion: RegionEntry
  metadataRegion: RegionEntry
  metadata: VhdxMetadata
  bat: Bat
  /** The log was replayed on this open (check reports it as a fixed corruption). */
  logReplayed: boolean
  logWriter: LogWriter | undefined
}


/** vhdx_open_region_tables: table 1 only, as QEMU reads it. */
async function readRegions(storage: ReadableStorage, fileSize: number, regions: VhdxLayout['regions']): Promise<{ bat: RegionEntry; metadata: RegionEntry }> {
  const file = storage.name
  const where = `VHDX region table at ${hex(REGION_TABLE1_OFFSET)}`
  const bytes = await readPadded(storage, REGION_TABLE1_OFFSET, REGION_TABLE_SIZE, fileSize)
  if (!checksumIsValid(bytes, 4)) throw openError('CORRUPT', file, where, 'the checksum does not match', REGION_TABLE1_OFFSET)
  const table = decodeRegionTableHeader(bytes)
  if (table.signature !== 'regi') throw openError('CORRUPT', file, where, `the signature is not 'regi'`, REGION_TABLE1_OFFSET)
  if (table.entryCount > REGION_TABLE_MAX_ENTRIES) throw openError('CORRUPT', file, where, `${table.entryCount} entries, above the 2047 the spec allows`, REGION_TABLE1_OFFSET + 8)
  let bat: RegionEntry | undefined
  let metadata: RegionEntry | undefined
  for (let i = 0; i < table.entryCount; i++) {
    const e = decodeRegionEntry(bytes, i)
    const at = REGION_TABLE1_OFFSET + 16 + i * 32
    const end = e.fileOffset + e.length
    const over = overlapping(regions, e.fileOffset, end)
    if (over) throw openError('CORRUPT', file, where, `entry ${i} (${hex(e.fileOffset)}, ${e.length} bytes) overlaps ${over.what}`, at, 'Invalid argument', `VHDX region ${e.fileOffset}-${end} overlaps with region ${over.start}-${over.end}`)
    const known = e.guid === BAT_GUID ? 'the BAT' : e.guid === METADATA_GUID ? 'the metadata region' : undefined
    regions.push({ start: e.fileOffset, end, what: known ?? `region ${e.guid}` })
    if (e.guid === BAT_GUID) {
      if (bat) throw openError('CORRUPT', file, where, `entry ${i} is a second BAT region`, at)
      bat = e
    } else if (e.guid === METADATA_GUID) {
      if (metadata) throw openError('CORRUPT', file, where, `entry ${i} is a second metadata region`, at)
      metadata = e
    } else if (e.required) {
      throw openError('UNSUPPORTED', file, where, `entry ${i} is a required region qimg does not know (${e.guid})`, at, 'Operation not supported')
    }
    // qimg's rules: known regions lie past the header section and inside the file.
    if (known && (e.fileOffset < HEADER_SECTION_END || end > fileSize || e.fileOffset % (1024 * 1024) !== 0)) {
      throw openError('CORRUPT', file, where, `${known} (${hex(e.fileOffset)}, ${e.length} bytes) must start 1 MiB aligned past the header section and end inside the file (${hex(fileSize)})`, at)
    }
  }
  if (!bat || !metadata) throw openError('CORRUPT', file, where, `no ${bat ? 'metadata' : 'BAT'} region`, REGION_TABLE1_OFFSET)
  return { bat, metadata }
}

export interface VhdxOpenOptions {
  writable: boolean
  random?: (n: number) => Uint8Array
}

/** Parses (and, opened writable, replays) an image as vhdx_open does. */
export async function openLayout(storage: ReadableStorage, options: VhdxOpenOptions): Promise<VhdxLayout> {
  const file = storage.name
  let fileSize = await storage.size()
  const random = options.random ?? defaultRandom
  const signature = await readPadded(storage, 0, 8, fileSize)
  if (String.fromCharCode(...signature) !== FILE_SIGNATURE) throw openError('NOT_AN_IMAGE', file, 'VHDX file identifier at 0x0', `the signature is not '${FILE_SIGNATURE}'`, 0)
  const headers = await HeaderPair.load(storage, fileSize, random)
  const active = headers.active
  const regions: VhdxLayout['regions'] = [{ start: active.logOffset, end: active.logOffset + active.logLength, what: 'the log' }]
  const { log, sequence } = await findActiveLog(storage, headers, fileSize)
  let logReplayed = false
  if (sequence) {
    if (!options.writable || !isWritable(storage)) {
      throw new ImageError('READ_ONLY', `${file}: VHDX log at ${hex(active.logOffset)}: the image was not closed cleanly and its log must be replayed, which needs it opened writable (qemu-img check -r all)`, {
        file, offset: active.logOffset,
        qemuText: `Could not open '${file}': VHDX image file '${file}' opened read-only, but contains a log that needs to be replayed\nTo replay the log, run:\nqemu-img check -r all '${file}'`,
      })
    }
    await replayLog(storage, headers, log, sequence)
    logReplayed = true
    fileSize = await storage.size()
  }
  const { bat: batRegion, metadata: metadataRegion } = await readRegions(storage, fileSize, regions)
  const metadata = await readMetadata(storage, fileSize, metadataRegion)
  const entries = batEntryCount(metadata)
  if (entries * 8 > batRegion.length) {
    throw openError('CORRUPT', file, `VHDX BAT region at ${hex(batRegion.fileOffset)}`, `${batRegion.length} bytes cannot hold the ${entries} entries the disk needs`, batRegion.fileOffset)
  }
  const bat = new Bat(await storage.read(batRegion.fileOffset, entries * 8), metadata, batRegion.fileOffset)
  const writer = options.writable ? new LogWriter(headers, sequence ? sequence.firstSequence + BigInt(sequence.count) : 1n, random) : undefined
  return { fileSize, headers, regions, batRegion, metadataRegion, metadata, bat, logReplayed, logWriter: writer }
}
