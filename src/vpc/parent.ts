// The parent of a differencing disk, from its dynamic header's parent locators (VHD
// specification, "Parent Locator Entry"): W2ru holds a path relative to the child, W2ku an
// absolute Windows path (both UTF-16LE), MacX a file:// URL (UTF-8). QEMU 7.2 reads none of them
// (it opens a differencing disk as a dynamic one, without its parent): this is qimg's reading.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { decodeUtf16, type DynamicHeader, type ParentLocator } from './dynamic-header.js'
import { readPadded } from './open.js'

/** The longest locator qimg reads (a Windows path is at most 32767 UTF-16 units). */
export const MAX_LOCATOR_BYTES = 65536

/** Platform codes qimg resolves, in the order it prefers them. */
const PREFERENCE = ['W2ru', 'W2ku', 'MacX'] as const

/** A Windows path as a path here: backslashes become slashes, a leading ".\" goes. */
function windowsPath(path: string): string {
  return path.replaceAll('\\', '/').replace(/^(\.\/)+/, '')
}

function fileUrlPath(url: string): string | undefined {
  const match = /^file:\/\/(localhost)?(\/.*)$/i.exec(url)
  if (!match) return undefined
  try {
    return decodeURIComponent(match[2]!)
  } catch {
    return undefined
  }
}

async function locatorText(storage: ReadableStorage, locator: ParentLocator, index: number, headerOffset: number, fileSize: number): Promise<string> {
  const file = storage.name
  const length = locator.platformDataLength
  const offset = locator.platformDataOffset
  const at = headerOffset + 576 + index * 24
  if (length > MAX_LOCATOR_BYTES || offset + BigInt(length) > BigInt(fileSize)) {
    throw new ImageError('CORRUPT', `${file}: VHD parent locator ${index} (at ${hex(at)}): ${length} bytes at 0x${offset.toString(16)} are not within the file (${fileSize} bytes, at most ${MAX_LOCATOR_BYTES} bytes read)`, { file, offset: at })
  }
  const bytes = await readPadded(storage, Number(offset), length, fileSize)
  if (locator.platformCode === 'MacX') {
    const end = bytes.indexOf(0)
    return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end))
  }
  return decodeUtf16(bytes, true)
}

/**
 * The parent's file name: the first usable locator in the order W2ru, W2ku, MacX, else the
 * header's parent name (a bare file name, taken relative to the child). Undefined when the
 * header names nothing at all.
 */
export async function parentName(storage: ReadableStorage, header: DynamicHeader, headerOffset: number, fileSize: number): Promise<string | undefined> {
  for (const code of PREFERENCE) {
    const index = header.parentLocators.findIndex((l) => l.platformCode === code && l.platformDataLength > 0)
    if (index < 0) continue
    const text = await locatorText(storage, header.parentLocators[index]!, index, headerOffset, fileSize)
    const name = code === 'MacX' ? fileUrlPath(text) : windowsPath(text)
    if (name) return name
  }
  return header.parentUnicodeName === '' ? undefined : windowsPath(header.parentUnicodeName)
}
