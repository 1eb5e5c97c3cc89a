// The VDI format module: probe (vdi_probe), open, create options and create, check.
import type { FormatModule } from '../format/module.js'
import { SIZE_OPTION } from '../format/create-options.js'
import { checkVdi } from './check.js'
import { createVdi } from './create.js'
import { FIELD, VDI_HEADER_BYTES, VDI_SIGNATURE } from './header.js'
import { VdiImage } from './image.js'

const truthy = new Set(['on', 'yes', 'true', 'y'])

export const vdiModule: FormatModule = {
  name: 'vdi',
  // vdi_probe: a whole header's worth of bytes with the signature, score 100.
  probe(head) {
    if (head.length < VDI_HEADER_BYTES) return 0
    const view = new DataView(head.buffer, head.byteOffset, head.length)
    return view.getUint32(FIELD.signature, true) === VDI_SIGNATURE ? 100 : 0
  },
  open: (storage, context) => VdiImage.open(storage, { writable: context.writable }),
  createOptions: [
    SIZE_OPTION,
    { name: 'static', type: 'bool', help: 'VDI static (pre-allocated) image', default: 'off' },
  ],
  check: checkVdi,
  async create(request) {
    const random = request.crypto
      ? (n: number) => request.crypto!.randomBytes(n)
      : (n: number) => globalThis.crypto.getRandomValues(new Uint8Array(n))
    await createVdi(request.storage, { size: request.size, static: truthy.has(request.options.get('static') ?? 'off'), random })
  },
}
