// qemu-img check of a qcow2 image, as the qcow2 module runs it: the image opened first as
// qcow2_do_open opens it under BDRV_O_CHECK (a header it refuses fails the check as an open
// failure; damage the check reports or repairs is let through), then qcow2_co_check.
import { ImageError, isImageError } from '../errors.js'
import { isWritable, type ReadableStorage } from '../io/storage.js'
import type { CheckReport } from '../format/capabilities.js'
import type { FormatCheckOptions } from '../format/module.js'
import { loadLayout, type Qcow2Layout } from './open.js'
import { clearStaleAutoclear } from './header-encode.js'
import { checkQcow2 } from './check.js'

// Open-time rules qcow2_do_open skips under BDRV_O_CHECK: check reports (or repairs) these.
const CHECK_TOLERATES = new Set(['Image does not contain a reference count table', 'Snapshot table too large', 'Snapshot table offset invalid'])

/** Whether the header's crypt_method (bytes 32-35) is set. */
async function encrypted(storage: ReadableStorage): Promise<boolean> {
  const bytes = await storage.read(32, 4)
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0) !== 0
}

/**
 * The open before the check: an open failure reads "Could not open 'NAME': …"; a writable open
 * (-r) clears the autoclear bits qimg does not keep up to date.
 */
async function openForCheck(storage: ReadableStorage, writable: boolean): Promise<void> {
  let layout: Qcow2Layout
  try {
    layout = await loadLayout(storage)
  } catch (e) {
    if (isImageError(e) && e.qemuText !== undefined && !CHECK_TOLERATES.has(e.qemuText)) {
      const name = storage.name
      throw new ImageError(e.code, `Could not open '${name}': ${e.message}`, { cause: e, file: name, qemuText: `Could not open '${name}': ${e.qemuText}` })
    }
    return
  }
  if (writable && isWritable(storage)) await clearStaleAutoclear(storage, layout.header)
}

/** The qcow2 module's check. */
export async function checkQcow2Image(storage: ReadableStorage, options: FormatCheckOptions): Promise<CheckReport> {
  // An encrypted image needs its secret to open, as for every other command; the refcounts are
  // checked without it.
  if (options.openImage && (await encrypted(storage))) await options.openImage()
  await openForCheck(storage, options.fix !== undefined)
  return checkQcow2(storage, { fix: options.fix, report: options.report, progress: options.progress })
}
