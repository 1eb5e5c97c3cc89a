// The vpc (VHD) format module: probe (vpc_probe), open, create options and create, and check as
// qemu-img checks vpc: the image opened, then "This image format does not support checks".
import type { FormatModule } from '../format/module.js'
import { checkVpc } from './check.js'
import { createVpc, VPC_CREATE_OPTIONS } from './create.js'
import { hasCookie } from './footer.js'
import { VpcImage } from './image.js'
import { isDifferencing, openLayout } from './open.js'
import { parentName } from './parent.js'

export const vpcModule: FormatModule = {
  name: 'vpc',
  // vpc_probe: "conectix" at offset 0, which only dynamic and differencing disks have: a fixed
  // disk (footer at the end only) probes as raw, as in QEMU.
  probe: (head) => (hasCookie(head) ? 100 : 0),
  async open(storage, context) {
    const layout = await openLayout(storage)
    let backing
    if (isDifferencing(layout)) {
      const sparse = layout.sparse!
      const name = await parentName(storage, sparse.header, sparse.headerOffset, layout.fileSize)
      if (name !== undefined) backing = { name, format: 'vpc' } // a VHD's parent is a VHD (a fixed one would probe as raw)
    }
    return new VpcImage(storage, layout, backing, context.writable)
  },
  createOptions: VPC_CREATE_OPTIONS,
  create: createVpc,
  check: checkVpc,
}
