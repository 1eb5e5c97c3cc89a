// The qcow2 format module: probe (qcow2.c qcow2_probe), open for the chain opener, create, check.
import type { FormatModule } from '../format/module.js'
import { Qcow2Image } from './image.js'
import { QCOW2_CREATE_OPTIONS, toQcow2Options } from './create-options.js'
import { toEncryptOptions } from './encrypt-options.js'
import { createQcow2Image } from './create-image.js'
import { checkQcow2Image } from './check-image.js'
import { measureQcow2Request } from './measure.js'
import { qcow2SpecificToJson, type Qcow2SpecificInfo } from './info-json.js'
import { pathCombine } from '../format/path-combine.js'

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
  check: checkQcow2Image,
  measure: measureQcow2Request,
  formatSpecificToJson: (data) => qcow2SpecificToJson(data as Qcow2SpecificInfo),
  // qcow2_co_create_opts deletes the image (and its data file) when creating it fails.
  removeOnCreateFailure: true,
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
  // qcow2_has_zero_init: preallocated clusters of an encrypted image do not read as zeros.
  zeroInit: (options) => toEncryptOptions(options) === undefined || (options.get('preallocation') ?? 'off') === 'off',
  // qcow2_co_create_opts: the options as QAPI reads them, before any file is touched.
  checkCreateOptions(options) {
    toEncryptOptions(options)
    toQcow2Options(options, 0)
  },
  async create(request) {
    // QEMU rounds qcow2 sizes up to whole sectors.
    const options = { ...toQcow2Options(request.options, Math.ceil(request.size / 512) * 512), encrypt: toEncryptOptions(request.options) }
    const { createFile, removeFile } = request
    const path = (name: string) => pathCombine(request.storage.name, name)
    await createQcow2Image(request.storage, options, {
      secret: request.secret,
      crypto: request.crypto,
      createDataFile: createFile && ((name) => createFile(path(name))),
      removeDataFile: removeFile && ((name) => removeFile(path(name))),
    })
  },
}
