// Mutation of valid images for fuzzing: a seeded PRNG, the metadata regions and typed fields of
// a built image, boundary values, pointers retargeted at other structures, cut and grown files.
import type { BuiltImage } from '../helpers/build-qcow2.js'
export { mulberry32 } from '../helpers/prng.js'
import { HEADER_FIELDS, SNAPSHOT_FIELDS, peek, poke } from '../helpers/poke.js'


/** Regions of metadata bytes, typed fields inside metadata, and where structures start. */
export interface Target { regions: [number, number][]; fields: [number, 1 | 2 | 4 | 8][]; structures: number[] }

export function targetsOf(image: BuiltImage): Target {
  const { bytes, layout } = image
  const cs = layout.clusterSize
  const regions: [number, number][] = []
  const fields: [number, 1 | 2 | 4 | 8][] = []
  // Header, extensions and the backing file name.
  let headerEnd = layout.headerLength + 8
  for (const e of layout.extensions) {
    headerEnd = e.offset + 8 + Math.ceil(e.length / 8) * 8 + 8
    fields.push([e.offset, 4], [e.offset + 4, 4])
    if (e.type === 0x23852875) fields.push([e.offset + 8, 4], [e.offset + 16, 8], [e.offset + 24, 8])
  }
  if (layout.backingFileOffset) headerEnd = Math.max(headerEnd, layout.backingFileOffset + Number(peek(bytes, 16, 4)))
  regions.push([0, headerEnd])
  for (const [offset, width] of Object.values(HEADER_FIELDS)) if (offset < layout.headerLength) fields.push([offset, width])
  // L1, L2 tables (whole table: unused entries become garbage entries too).
  regions.push([layout.l1TableOffset, layout.l1TableOffset + layout.l1Size * 8])
  for (let i = 0; i < layout.l1Size; i++) fields.push([layout.l1TableOffset + i * 8, 8])
  for (const l2 of layout.l2Tables.values()) {
    regions.push([l2, l2 + Math.min(cs, 1024)])
    for (let at = 0; at < Math.min(cs, 1024); at += 8) if (peek(bytes, l2 + at, 8) !== 0n) fields.push([l2 + at, 8])
  }
  // Refcount table and blocks.
  regions.push([layout.refcountTableOffset, layout.refcountTableOffset + layout.refblocks.length * 8])
  for (let i = 0; i < layout.refblocks.length; i++) fields.push([layout.refcountTableOffset + i * 8, 8])
  for (const b of layout.refblocks) regions.push([b, b + Math.min(cs, 256)])
  // Snapshot table and snapshot L1 tables.
  for (const s of layout.snapshots) {
    regions.push([s.entryOffset, s.entryOffset + 64 + 16], [s.l1TableOffset, s.l1TableOffset + s.l1Size * 8])
    for (const [offset, width] of Object.values(SNAPSHOT_FIELDS)) fields.push([s.entryOffset + offset, width])
    fields.push([s.entryOffset + 40, 8], [s.entryOffset + 48, 8], [s.entryOffset + 56, 8])
  }
  // Bitmap directory and tables.
  if (layout.bitmapDirectoryOffset) {
    regions.push([layout.bitmapDirectoryOffset, layout.bitmapDirectoryOffset + 64])
    for (const at of [0, 32]) {
      const e = layout.bitmapDirectoryOffset + at
      fields.push([e, 8], [e + 8, 4], [e + 12, 4], [e + 16, 1], [e + 17, 1], [e + 18, 2], [e + 20, 4])
    }
    for (const t of layout.bitmapTables) regions.push([t, t + 16])
  }
  // Compressed streams (decoder robustness).
  for (const c of layout.compressed.values()) regions.push([c.hostOffset, c.hostOffset + c.length])
  // Pointers retargeted at other structures: tables that overlap, point at themselves or the header.
  const structures = [0, layout.l1TableOffset, ...layout.l2Tables.values(), layout.refcountTableOffset, ...layout.refblocks,
    ...layout.snapshots.flatMap((s) => [s.entryOffset, s.l1TableOffset]), layout.bitmapDirectoryOffset, ...layout.dataClusters.values()]
  return { regions: regions.filter(([a, b]) => b > a), fields, structures }
}

/** A boundary value for a field of `width` bytes currently holding `old`. */
function boundary(rand: () => number, width: 1 | 2 | 4 | 8, old: bigint, fileSize: number, cs: number, structures: number[]): bigint {
  const max = (1n << BigInt(width * 8)) - 1n
  const structure = BigInt(structures[rand() % structures.length]!)
  const flags = old & (3n << 62n)
  const candidates: bigint[] = [
    0n, 1n, max, 1n << BigInt(width * 8 - 1), old + 1n, old - 1n, old ^ (1n << BigInt(rand() % (width * 8))),
    BigInt(fileSize), BigInt(fileSize) - 8n, BigInt(fileSize + cs), BigInt(cs), old + BigInt(cs), old - BigInt(cs), old * 2n,
    0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn, 65536n, 65537n, 4_194_305n, 1n << 53n, (1n << 53n) - 1n, 1n << 40n,
    (1n << 56n) - BigInt(cs), 1n << 62n, 1n << 63n, (1n << 63n) | BigInt(fileSize), BigInt(rand()) * 0x1_0000_0000n + BigInt(rand()),
    structure, structure | flags, structure | (1n << 63n),
  ]
  return candidates[rand() % candidates.length]! & max
}

/** Applies 1-4 mutations (sometimes also cutting or growing the file); describes each. */
export function mutate(rand: () => number, image: Uint8Array, target: Target, cs: number): { bytes: Uint8Array; done: string[] } {
  let bytes = image.slice()
  const done: string[] = []
  const count = 1 + (rand() % 4)
  for (let m = 0; m < count; m++) {
    if (rand() % 2 === 0 && target.fields.length > 0) {
      const [offset, width] = target.fields[rand() % target.fields.length]!
      const old = peek(bytes, offset, width)
      const value = boundary(rand, width, old, bytes.length, cs, target.structures)
      poke(bytes, offset, width, value)
      done.push(`u${width * 8}@0x${offset.toString(16)}: 0x${old.toString(16)}→0x${value.toString(16)}`)
    } else {
      const [start, end] = target.regions[rand() % target.regions.length]!
      const offset = start + (rand() % (end - start))
      const old = bytes[offset]!
      const value = rand() % 3 === 0 ? old ^ (1 << (rand() % 8)) : rand() & 0xff
      bytes[offset] = value
      done.push(`byte@0x${offset.toString(16)}: 0x${old.toString(16)}→0x${value.toString(16)}`)
    }
  }
  const resize = rand() % 16
  if (resize === 0) {
    const length = rand() % bytes.length
    bytes = bytes.slice(0, length)
    done.push(`truncated to ${length} bytes`)
  } else if (resize === 1) {
    const grown = new Uint8Array(bytes.length + 1 + (rand() % (2 * cs)))
    grown.set(bytes)
    for (let i = bytes.length; i < grown.length; i++) grown[i] = rand() & 0xff
    bytes = grown
    done.push(`grown to ${grown.length} bytes`)
  }
  return { bytes, done }
}
