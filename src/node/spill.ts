// A temporary store for compressed clusters between the two passes of a compressed qcow2
// stream: an unlinked file in the temporary directory, used only while that file system keeps
// a margin free. QIMG_STREAM_SPILL=0 turns it off (the clusters past the memory budget are then
// compressed a second time); QIMG_STREAM_SPILL=DIR puts it in DIR.
import { mkdtemp, rm, statfs } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileStorage } from '../io/file.js'
import type { Storage } from '../io/storage.js'

/** Space left free on the temporary file system. */
const MARGIN_BYTES = 1024 * 1024 * 1024

/** A spill store and how much it may take, or undefined when there is no room or it is off. */
export async function openTempSpill(): Promise<{ storage: Storage; spillBytes: number } | undefined> {
  const setting = process.env['QIMG_STREAM_SPILL']
  if (setting === '0') return undefined
  const dir = setting && setting !== '1' ? setting : tmpdir()
  try {
    const fs = await statfs(dir)
    const spillBytes = fs.bavail * fs.bsize - MARGIN_BYTES
    if (spillBytes <= 0) return undefined
    const folder = await mkdtemp(join(dir, 'qimg-spill-'))
    const storage = await FileStorage.create(join(folder, 'clusters'))
    await rm(folder, { recursive: true, force: true }) // unlinked: gone when closed, whatever happens
    return { storage, spillBytes }
  } catch {
    return undefined
  }
}
