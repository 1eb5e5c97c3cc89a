// The vhdx format module: probe (vhdx_probe), open (a differencing disk's parent from its
// locator, which QEMU cannot open), create and check as qemu-img checks VHDX.
import { ImageError, hex } from '../errors.js'
import type { BackingReference } from '../format/driver.js'
import type { FormatModule } from '../format/module.js'
import { batError, checkBatEntries } from './bat.js'
import { checkVhdx } from './check.js'
import { VHDX_CREATE_OPTIONS, createVhdx } from './create.js'
import { VhdxImage } from './image.js'
import { openLayout, type VhdxLayout } from './open.js'
import { FILE_SIGNATURE, PARENT_VHDX_GUID } from './spec.js'

/** §2.6.2.6.1: the parent's path, relative first, as a VHDX parent locator names it; Windows separators made '/'. */
export function parentName(layout: VhdxLayout, file: string): BackingReference {
  const locator = layout.metadata.parentLocator!
  if (locator.locatorType !== PARENT_VHDX_GUID) {
    throw new ImageError('UNSUPPORTED', `${file}: VHDX parent locator: type ${locator.locatorType} is not the VHDX parent type`, { qemuText: 'Operation not supported' })
  }
  const path = locator.entries.get('relative_path') ?? locator.entries.get('absolute_win32_path') ?? locator.entries.get('volume_path')
  if (path === undefined || path === '') throw new ImageError('CORRUPT', `${file}: VHDX parent locator at ${hex(layout.metadataRegion.fileOffset)}: no relative_path, absolute_win32_path or volume_path`)
  return { name: path.replace(/\\/g, '/').replace(/^\.\//, ''), format: 'vhdx' }
}

export const vhdxModule: FormatModule = {
  name: 'vhdx',
  probe: (head) => (head.length >= 8 && String.fromCharCode(...head.subarray(0, 8)) === FILE_SIGNATURE ? 100 : 0),
  async open(storage, context) {
    const layout = await openLayout(storage, { writable: context.writable })
    const problems = checkBatEntries(layout.bat, layout.metadata.virtualDiskSize, layout.fileSize, layout.regions, storage.name)
    if (problems.length > 0) {
      throw batError(problems[0]!, storage.name)
    }
    const backing = layout.metadata.hasParent ? parentName(layout, storage.name) : undefined
    return new VhdxImage(storage, layout, backing, context.writable)
  },
  createOptions: VHDX_CREATE_OPTIONS,
  create: createVhdx,
  check: checkVhdx,
}
