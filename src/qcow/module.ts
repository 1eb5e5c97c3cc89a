// The qcow (version 1) format module: probe (qcow_probe), open, create options, create.
import { ImageError } from '../errors.js'
import type { FormatModule } from '../format/module.js'
import { qcowAesCipher, missingKeyError } from './aes.js'
import { createQcow, QCOW_CREATE_OPTIONS } from './create.js'
import { QcowImage } from './driver.js'
import { HEADER_LENGTH, QCOW_MAGIC, QCOW_VERSION, decodeHeader, validateHeader } from './header.js'
import { L1Table, readPadded } from './tables.js'

export const qcowModule: FormatModule = {
  name: 'qcow',
  // qcow_probe: the whole header present, magic and version 1: score 100.
  probe(head) {
    if (head.length < HEADER_LENGTH) return 0
    const view = new DataView(head.buffer, head.byteOffset, head.length)
    return view.getUint32(0) === QCOW_MAGIC && view.getUint32(4) === QCOW_VERSION ? 100 : 0
  },
  async open(storage, context) {
    const file = storage.name
    const header = decodeHeader(await readPadded(storage, 0, HEADER_LENGTH))
    const geometry = validateHeader(header, file)
    const encrypted = header.cryptMethod !== 0
    let cipher
    if (encrypted && !(context.metadataOnly && !context.writable)) {
      const secret = await context.secret?.()
      if (secret === undefined) throw missingKeyError(file)
      if (!context.crypto) throw new ImageError('UNSUPPORTED', `${file}: no crypto provider was given to open an encrypted image`, { file })
      cipher = qcowAesCipher(context.crypto, secret)
    }
    const l1 = await L1Table.load(storage, Number(header.l1TableOffset), geometry.l1Size)
    let backing
    if (header.backingFileOffset !== 0n) {
      const bytes = await readPadded(storage, Number(header.backingFileOffset), header.backingFileSize)
      const end = bytes.indexOf(0)
      backing = { name: new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end)), format: undefined }
      if (backing.name === '') backing = undefined
    }
    return new QcowImage({
      storage, geometry, l1, backing, encrypted, cipher,
      codecs: context.codecs, compressors: context.compressors, writable: context.writable,
    })
  },
  createOptions: QCOW_CREATE_OPTIONS,
  compressedWrites: true,
  create: createQcow,
}
