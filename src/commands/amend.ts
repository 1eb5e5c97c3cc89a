// `amend`: change the options a format lets change after creation (qemu-img amend), through
// the driver's Amendable capability; the command opens, reopens and resizes for it.
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import { isAmendable } from '../format/amend-capability.js'
import type { BlockDevice } from '../format/device.js'
import { resizeImage } from './resize.js'

/**
 * Amends the image at `open()` with the -o values `options` (the format parses them); `open`
 * gives a writable device. Steps that need the image closed (qcow2's refcount width) run
 * between openings, on the file `storageOf` gives.
 */
export async function amendImage(open: () => Promise<BlockDevice>, storageOf: () => Promise<Storage>, options: ReadonlyMap<string, string>): Promise<void> {
  let device = await open()
  try {
    const driver = device.driver
    if (!isAmendable(driver)) throw new ImageError('UNSUPPORTED', `amend: format '${driver.format}' has no amendable options`)
    await driver.amend(options, {
      resize: (size) => resizeImage(device, size, { shrink: true }),
      whileClosed: async (step) => {
        await device.close()
        const storage = await storageOf()
        try {
          await step(storage)
        } finally {
          await storage.close()
        }
        device = await open()
        return device.driver
      },
    })
  } finally {
    await device.close()
  }
}
