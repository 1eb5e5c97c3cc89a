// qimg bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)...
//             [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [--object OBJ] [--image-opts | -f FMT] FILE BITMAP
// qemu-img's img_bitmap: the image is opened read-write without its backing chain, the actions
// run in command-line order through QEMU's block-dirty-bitmap-* semantics, and the bitmaps are
// stored when the image closes — also after a failed action, as qemu-img does.
import { ImageError } from '../../errors.js'
import type { BlockDevice } from '../../format/device.js'
import { openImage } from '../../node/open.js'
import { hasPersistentBitmaps, inconsistentError, type PersistentBitmap } from '../../format/bitmap-capability.js'
import { getopt, stringOption } from '../getopt.js'
import { cvtnum } from '../size.js'
import { openOperand, type Command } from '../context.js'

const ACTIONS = ['add', 'remove', 'clear', 'enable', 'disable', 'merge']

/**
 * A name for the node in messages: qemu-img's nodes are auto-named "#blockNNN" (a counter that
 * differs from run to run; QEMU's iotests filter it).
 */
function nodeName(): string {
  return `#block${100 + Math.floor(Math.random() * 900)}`
}

function fail(message: string): ImageError {
  return new ImageError('INVALID_ARGUMENT', message)
}

/** block_dirty_bitmap_lookup. */
function lookup(bitmaps: readonly PersistentBitmap[], name: string): PersistentBitmap {
  const found = bitmaps.find((b) => b.name === name)
  if (!found) throw fail(`Dirty bitmap '${name}' not found`)
  return found
}

/**
 * qmp_block_dirty_bitmap_add's checks, then the driver's (bdrv_co_can_store_new_dirty_bitmap);
 * the new bitmap goes at `index` of the image's list (the end by default).
 */
export function addBitmap(device: BlockDevice, name: string, granularityOption: number, options: { enabled?: boolean; index?: number } = {}): PersistentBitmap {
  if (name === '') throw fail('Bitmap name cannot be empty')
  const image = device.driver
  let granularity: number
  if (granularityOption) {
    granularity = granularityOption % 2 ** 32 // a uint32 in QMP
    if (granularity < 512 || (granularity & (granularity - 1)) !== 0) throw fail('Granularity must be power of 2 and at least 512')
  } else {
    // bdrv_get_default_bitmap_granularity: the cluster size within [4 KiB, 64 KiB], 64 KiB
    // for a format without clusters.
    granularity = Math.min(65536, Math.max(4096, image.clusterSize ?? 65536))
  }
  if (!hasPersistentBitmaps(image)) throw fail(`Can't store persistent bitmaps to ${nodeName()}: Operation not supported`)
  if (image.loadedBitmaps().some((b) => b.name === name)) throw fail(`Bitmap already exists: ${name}`)
  const refusal = image.bitmapRefusal(name, granularity)
  if (refusal !== undefined) throw fail(`Can't make bitmap '${name}' persistent in '${nodeName()}': ${refusal}`)
  const added = image.addBitmap(name, granularity, options.index)
  added.enabled = options.enabled ?? true
  return added
}

/** bdrv_merge_dirty_bitmap's checks, then the merge. */
export function mergeBitmap(dest: PersistentBitmap, src: PersistentBitmap): void {
  if (dest.inconsistent || src.inconsistent) throw inconsistentError(dest.inconsistent ? dest.name : src.name)
  if (src.size !== dest.size) throw fail(`Bitmaps are of different sizes (destination size is ${dest.size}, source size is ${src.size}) and can't be merged`)
  dest.merge(src)
}

export async function bitmapsOf(device: BlockDevice): Promise<PersistentBitmap[]> {
  const driver = device.driver
  return hasPersistentBitmaps(driver) ? driver.readBitmaps() : []
}

/** Deletes bitmap `name` (found in the image's bitmaps, so the driver has them). */
export async function removeBitmap(device: BlockDevice, name: string): Promise<void> {
  const driver = device.driver
  if (hasPersistentBitmaps(driver)) await driver.removeBitmap(name)
}

export const bitmap: Command = async (args) => {
  const parsed = getopt(args, [
    { short: 'h', long: 'help', value: false },
    { long: 'object', value: true },
    { long: 'image-opts', value: false },
    ...ACTIONS.map((a) => ({ long: a, value: a === 'merge' })),
    { short: 'g', long: 'granularity', value: true, key: 'granularity' },
    { short: 'b', long: 'source-file', value: true, key: 'source-file' },
    { short: 'F', long: 'source-format', value: true, key: 'source-format' },
    { short: 'f', value: true, key: 'format' },
  ], 'qemu-img')
  let granularity = 0
  const granularityText = stringOption(parsed, 'granularity')
  if (granularityText !== undefined) granularity = cvtnum('granularity', granularityText)
  const actions = parsed.order.filter((o) => ACTIONS.includes(o.key))
  if (actions.length === 0) throw fail('Need at least one of --add, --remove, --clear, --enable, --disable, or --merge')
  const sourceFile = stringOption(parsed, 'source-file')
  if (granularity && !actions.some((a) => a.key === 'add')) throw fail('granularity only supported with --add')
  if (parsed.options.has('source-format') && sourceFile === undefined) throw fail('-F only supported with -b')
  if (sourceFile !== undefined && !actions.some((a) => a.key === 'merge')) throw fail('Merge bitmap source file only supported with --merge')
  if (parsed.operands.length !== 2) throw fail('Expecting filename and bitmap name')
  const [filename, name] = parsed.operands as [string, string]

  const device = await openOperand(filename, parsed, { writable: true, fileReferences: 'ignore' })
  let source: BlockDevice | undefined
  try {
    if (sourceFile !== undefined) source = await openImage(sourceFile, { format: stringOption(parsed, 'source-format'), fileReferences: 'ignore' })
    for (const action of actions) {
      try {
        const bitmaps = await bitmapsOf(device)
        if (action.key === 'add') addBitmap(device, name, granularity)
        else if (action.key === 'merge') {
          const dest = lookup(bitmaps, name)
          mergeBitmap(dest, lookup(source ? await bitmapsOf(source) : bitmaps, action.value as string))
        } else {
          const target = lookup(bitmaps, name)
          if (action.key === 'remove') await removeBitmap(device, name)
          else if (target.inconsistent) throw inconsistentError(name)
          else if (action.key === 'clear') target.clear()
          else target.enabled = action.key === 'enable'
        }
      } catch (e) {
        if (e instanceof ImageError) throw new ImageError(e.code, `Operation ${action.key} on bitmap ${name} failed: ${e.message}`, { cause: e })
        throw e
      }
    }
    return 0
  } finally {
    await source?.close()
    await device.close()
  }
}
