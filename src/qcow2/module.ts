// The qcow2 format module: probe (qcow2.c qcow2_probe) and open for the chain opener.
import type { FormatModule } from '../format/module.js'
import { Qcow2Image } from './image.js'
import { QCOW2_CREATE_OPTIONS } from './create-options.js'

/** "QFI\xfb", the magic every QCOW version starts with (docs/interop/qcow2.rst, header). */
const QCOW_MAGIC = 0x514649fb

export const qcow2Module: FormatModule = {
  name: 'qcow2',
  // qcow2_probe: magic and a version of 2 or more, score 100.
  probe(head) {
    if (head.length < 8) return 0
    const view = new DataView(head.buffer, head.byteOffset, head.length)
    return view.getUint32(0) === QCOW_MAGIC && view.getUint32(4) >= 2 ? 100 : 0
  },
  createOptions: QCOW2_CREATE_OPTIONS,
  open(storage, context) {
    return Qcow2Image.open(storage, {
      codecs: context.codecs,
      compressors: context.compressors,
      crypto: context.crypto,
      secret: context.top ? context.secret : undefined,
      metadataOnly: context.metadataOnly,
      snapshot: context.top ? context.snapshot : undefined,
      l2CacheSize: context.l2CacheSize,
      skipDataFile: context.skipReferencedFiles && !(context.top && context.dataFile),
      openDataFile: context.top && context.dataFile
        ? async () => context.dataFile!
        : context.openReferenced && (async (name) => context.openReferenced!(name, 'external data file', { writable: context.writable })),
      writable: context.writable,
      report: context.top ? context.report : undefined,
    })
  },
}
