// VHD test helpers: images made in memory by the module's create, and differencing disks built
// from the VHD specification (qemu-img cannot create them): footer copy, dynamic header with
// parent UUID, name and W2ku/W2ru locators, BAT, blocks whose sector bitmaps are partial.
import { MemoryStorage } from '../../src/io/memory.js'
import { openChain } from '../../src/format/chain.js'
import { vpcModule } from '../../src/vpc/module.js'
import { FOOTER_FIELD, VHD_DIFFERENCING, decodeFooter, encodeFooter } from '../../src/vpc/footer.js'
import { DEFAULT_BLOCK_SIZE, encodeDynamicHeader, encodeUtf16, type ParentLocator } from '../../src/vpc/dynamic-header.js'

/** A new VHD of `size` bytes in memory, as `qimg create -f vpc -o …` makes it. */
export async function newVpc(size: number, options: Record<string, string> = {}, name = 'test.vhd'): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), name)
  await vpcModule.create!({ storage, size, options: new Map(Object.entries(options)), secret: undefined, crypto: undefined, compressors: undefined })
  return storage
}

/** Opens `bytes` (a copy) as vpc through the chain opener. */
export function openVpc(bytes: Uint8Array, writable = false, name = 'test.vhd') {
  return openChain(new MemoryStorage(bytes.slice(), name), { format: 'vpc', writable })
}

/** A big-endian value of `width` bytes at `offset`. */
export function pokeBE(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: number | bigint): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  if (width === 1) view.setUint8(offset, Number(value))
  else if (width === 2) view.setUint16(offset, Number(value))
  else if (width === 4) view.setUint32(offset, Number(value))
  else view.setBigUint64(offset, BigInt(value))
}

/** Recomputes the checksum of the footer at `at`. */
export function resumFooter(bytes: Uint8Array, at: number): void {
  bytes.set(encodeFooter(decodeFooter(bytes.subarray(at, at + 512))), at)
}

/** Sectors a differencing disk holds: `count` sectors from guest sector `sector`, all `fill`. */
export interface SectorRun { sector: number; count: number; fill: number }

/** What {@link buildDifferencing} makes. */
export interface DifferencingSpec {
  /** Guest size in bytes (a multiple of 512). */
  size: number
  /** The parent's footer (its UUID goes in the header). */
  parentFooter: Uint8Array
  /** The relative name stored in W2ru (".\\NAME") and the header; W2ku gets "C:\\vms\\NAME". */
  parentFile: string
  /** Which locators to write (default both). */
  locators?: ('W2ku' | 'W2ru')[]
  runs: SectorRun[]
  /** Bytes put in allocated blocks' sectors whose bits are clear: a reader must not see them. */
  junk?: number
}

/**
 * A differencing VHD as the specification lays it out (as Hyper-V writes one): creator 'win '
 * (sized by current_size), 2 MiB blocks, each allocated block's bitmap marking only the runs.
 */
export function buildDifferencing(spec: DifferencingSpec): Uint8Array {
  const blockSize = DEFAULT_BLOCK_SIZE
  const entries = Math.ceil(spec.size / blockSize)
  const batOffset = 1536
  const batBytes = Math.ceil((entries * 4) / 512) * 512
  const codes = spec.locators ?? ['W2ku', 'W2ru']
  const texts = { W2ku: `C:\\vms\\${spec.parentFile}`, W2ru: `.\\${spec.parentFile}` }
  let next = batOffset + batBytes
  const locatorData: [number, Uint8Array][] = []
  const parentLocators: ParentLocator[] = codes.map((code) => {
    const data = encodeUtf16(texts[code], true)
    const entry = { platformCode: code, platformDataSpace: 512, platformDataLength: data.length, platformDataOffset: BigInt(next) }
    locatorData.push([next, data])
    next += 512
    return entry
  })
  const blocks = new Set(spec.runs.flatMap((r) => {
    const out: number[] = []
    for (let s = r.sector; s < r.sector + r.count; s++) out.push(Math.floor((s * 512) / blockSize))
    return out
  }))
  const order = [...blocks].sort((a, b) => a - b)
  const span = 512 + blockSize
  const fileSize = next + order.length * span + 512
  const bytes = new Uint8Array(fileSize)
  const parent = decodeFooter(spec.parentFooter)
  const footer = encodeFooter({
    ...parent, creatorApp: 'win ', diskType: VHD_DIFFERENCING, dataOffset: 512n, originalSize: BigInt(spec.size), currentSize: BigInt(spec.size),
    uniqueId: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i), timestamp: parent.timestamp + 10,
  })
  bytes.set(footer, 0)
  bytes.set(footer, fileSize - 512)
  bytes.set(encodeDynamicHeader({
    cookie: 'cxsparse', dataOffset: 0xffffffffffffffffn, tableOffset: BigInt(batOffset), headerVersion: 0x00010000,
    maxTableEntries: entries, blockSize, checksum: 0,
    parentUniqueId: spec.parentFooter.slice(FOOTER_FIELD.uniqueId, FOOTER_FIELD.uniqueId + 16),
    parentTimestamp: parent.timestamp, parentUnicodeName: spec.parentFile, parentLocators,
  }), 512)
  for (const [at, data] of locatorData) bytes.set(data, at)
  const bat = new DataView(bytes.buffer, batOffset, batBytes)
  for (let i = 0; i < batBytes / 4; i++) bat.setUint32(i * 4, 0xffffffff)
  const hostOf = new Map<number, number>()
  order.forEach((block, k) => {
    const host = next + k * span
    hostOf.set(block, host)
    bat.setUint32(block * 4, host / 512)
    bytes.fill(spec.junk ?? 0, host + 512, host + span)
  })
  for (const run of spec.runs) {
    for (let s = run.sector; s < run.sector + run.count; s++) {
      const block = Math.floor((s * 512) / blockSize)
      const host = hostOf.get(block)!
      const within = s - (block * blockSize) / 512
      bytes[host + (within >> 3)]! |= 0x80 >> (within & 7)
      bytes.fill(run.fill, host + 512 + within * 512, host + 512 + (within + 1) * 512)
    }
  }
  return bytes
}

/** What a guest reads from a differencing disk built from `spec` over `parent` guest bytes. */
export function expectedDifferencing(spec: DifferencingSpec, parent: Uint8Array): Uint8Array {
  const out = new Uint8Array(spec.size)
  out.set(parent.subarray(0, Math.min(parent.length, spec.size)))
  for (const run of spec.runs) out.fill(run.fill, run.sector * 512, (run.sector + run.count) * 512)
  return out
}
