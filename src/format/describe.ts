// What `info` shows of one layer: the driver's facts plus the backing name resolved against the
// layer's own name (a path or a URL), as qemu-img's full-backing-filename. Portable: the CLI and
// the inspector page's worker both use it.
import type { BlockDevice } from './device.js'
import type { ImageInfo } from './info.js'
import { pathCombine } from './path-combine.js'

/** `info` of the top layer with the backing name resolved as qemu-img shows it. */
export async function describeLayer(device: BlockDevice): Promise<ImageInfo> {
  const info = await device.info()
  if (info.backingFilename !== undefined) info.fullBackingFilename = pathCombine(device.driver.storage.name, info.backingFilename)
  return info
}
