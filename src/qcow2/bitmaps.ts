// The persistent bitmap directory ("Bitmaps extension"): names, granularity and flags for info.
import { decodeText, viewOf } from '../binary/bytes.js'
import { ImageError, hex } from '../errors.js'
import type { BitmapInfo } from '../format/info.js'
import type { ReadableStorage } from '../io/storage.js'
import type { Qcow2Layout } from './open.js'
import { AUTOCLEAR_BITMAPS } from './spec.js'

const ENTRY_HEADER = 24
const FLAG_IN_USE = 1
const FLAG_AUTO = 2

/** Lists the bitmaps of the image; undefined when it has none (or they are not valid). */
export async function loadBitmapInfo(storage: ReadableStorage, layout: Qcow2Layout): Promise<BitmapInfo[] | undefined> {
  const ext = layout.header.bitmaps
  if (!ext || (layout.header.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return undefined
  const file = storage.name
  if (ext.directoryOffset + ext.directorySize > layout.fileSize) {
    throw new ImageError('CORRUPT', `${file}: bitmap directory at ${hex(ext.directoryOffset)} runs past end of file`, { offset: ext.directoryOffset, file })
  }
  const bytes = await storage.read(ext.directoryOffset, ext.directorySize)
  const view = viewOf(bytes)
  const list: BitmapInfo[] = []
  let offset = 0
  for (let i = 0; i < ext.bitmapCount; i++) {
    if (offset + ENTRY_HEADER > bytes.length) throw new ImageError('CORRUPT', `${file}: bitmap directory entry ${i} runs past the directory (${ext.directorySize} bytes)`, { offset: ext.directoryOffset + offset, file })
    const flags = view.getUint32(offset + 12)
    const granularityBits = view.getUint8(offset + 17)
    const nameSize = view.getUint16(offset + 18)
    const extraSize = view.getUint32(offset + 20)
    const nameAt = offset + ENTRY_HEADER + extraSize
    if (nameAt + nameSize > bytes.length) throw new ImageError('CORRUPT', `${file}: bitmap directory entry ${i} name runs past the directory`, { offset: ext.directoryOffset + offset, file })
    if (granularityBits < 9 || granularityBits > 31) throw new ImageError('CORRUPT', `${file}: bitmap directory entry ${i}: granularity 2^${granularityBits} out of range (2^9..2^31)`, { offset: ext.directoryOffset + offset, file })
    const flagNames: string[] = []
    if (flags & FLAG_IN_USE) flagNames.push('in-use')
    if (flags & FLAG_AUTO) flagNames.push('auto')
    list.push({ name: decodeText(bytes.subarray(nameAt, nameAt + nameSize)), granularity: 2 ** granularityBits, flags: flagNames })
    offset = Math.ceil((nameAt + nameSize) / 8) * 8
  }
  return list.length === 0 ? undefined : list
}
