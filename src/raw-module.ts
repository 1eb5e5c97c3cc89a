// The raw format module: every file is raw when nothing else claims it (raw_probe, score 1).
import type { FormatModule } from './format/module.js'
import { RawImage } from './raw.js'
import { SIZE_OPTION } from './format/create-options.js'

export const rawModule: FormatModule = {
  name: 'raw',
  probe: () => 1,
  createOptions: [SIZE_OPTION],
  open: (storage, context) => RawImage.open(storage, { writable: context.writable }),
}
