// The raw format module: every file is raw when nothing else claims it (raw_probe, score 1);
// creating one sizes the file as QEMU's file driver does (raw_co_create, raw_regular_truncate).
import type { FormatModule } from './format/module.js'
import { RawImage } from './raw.js'
import { SIZE_OPTION } from './format/create-options.js'
import { ImageError } from './errors.js'
import { borrowed } from './io/borrowed.js'
import { roundUp } from './format/measure.js'

/** The preallocation of a raw image (file-posix's checks and messages). */
export function rawPreallocation(opts: ReadonlyMap<string, string>): 'off' | 'falloc' | 'full' {
  const mode = opts.get('preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(mode)) throw new ImageError('INVALID_ARGUMENT', `invalid parameter value: ${mode}`)
  if (mode === 'metadata') throw new ImageError('INVALID_ARGUMENT', `Unsupported preallocation mode: ${mode}`)
  return mode as 'off' | 'falloc' | 'full'
}

export const rawModule: FormatModule = {
  name: 'raw',
  probe: () => 1,
  createOptions: [SIZE_OPTION],
  open: (storage, context) => RawImage.open(storage, { writable: context.writable }),
  checkCreateOptions: (options) => void rawPreallocation(options),
  /**
   * The size rounded up to whole sectors; preallocation full writes zeros, otherwise the first
   * block is written, as QEMU does to help alignment probing, so the allocation matches too.
   */
  async create(request) {
    const size = Math.ceil(request.size / 512) * 512
    if (size > 0) await (await RawImage.open(borrowed(request.storage), { writable: true })).setVirtualSize(size, rawPreallocation(request.options))
  },
  /** raw_measure: the size itself (rounded to sectors without a source). */
  async measure({ source }) {
    const required = 'device' in source ? source.device.size : roundUp(source.size, 512)
    return { required, fullyAllocated: required, bitmaps: undefined }
  },
}
