// `resize`: the generic checks of qemu-img resize (positive size, --shrink, preallocation only
// when growing), then the driver's Resizable capability, or QEMU's text for a format without.
import { canResize, type ResizePreallocation } from '../format/capabilities.js'
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'

/** Options of {@link resizeImage}. */
export interface ResizeOptions {
  shrink?: boolean
  preallocation?: ResizePreallocation
}

/** Changes the virtual size of the (writable) top image of `device` to `size`. */
export async function resizeImage(device: BlockDevice, size: number, options: ResizeOptions = {}): Promise<void> {
  const driver = device.driver
  const oldSize = driver.virtualSize
  if (size <= 0) throw new ImageError('INVALID_ARGUMENT', 'New image size must be positive')
  // qemu-img checks preallocation first: it needs the image to grow (the same size will not do).
  const prealloc = options.preallocation ?? 'off'
  if (prealloc !== 'off' && size <= oldSize) throw new ImageError('INVALID_ARGUMENT', 'Preallocation can only be used for growing images')
  if (size < oldSize && !options.shrink) {
    throw new ImageError('INVALID_ARGUMENT', "Use the --shrink option to perform a shrink operation.\nqimg: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.")
  }
  if (!canResize(driver)) throw new ImageError('UNSUPPORTED', 'Image format driver does not support resize', { file: driver.storage.name })
  await driver.resize(size, { preallocation: prealloc, writeZeroes: (offset, length) => device.writeZeroes(offset, length) })
  await device.flush()
}
