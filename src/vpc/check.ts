// qemu-img check for vpc: QEMU opens the image (so vpc_open's refusals come first) and then has
// no check to run (vpc has no bdrv_co_check): "This image format does not support checks".
import { ImageError } from '../errors.js'
import type { CheckReport } from '../format/capabilities.js'
import type { ReadableStorage } from '../io/storage.js'
import { openLayout } from './open.js'

const NO_CHECK_TEXT = 'This image format does not support checks'

export async function checkVpc(storage: ReadableStorage): Promise<CheckReport> {
  await openLayout(storage)
  throw new ImageError('UNSUPPORTED', `${storage.name}: vpc images have no consistency check (${NO_CHECK_TEXT})`, { file: storage.name, qemuText: NO_CHECK_TEXT })
}
