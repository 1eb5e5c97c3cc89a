// Format probing by magic bytes, as qemu-img does without -f: qcow2 magic (version 2 or 3),
// QCOW v1, else raw. Probing never picks a format that names other files by accident.
import type { ReadableStorage } from '../io/storage.js'

/** Formats qimg recognizes by magic. */
export type ProbedFormat = 'qcow2' | 'qcow' | 'raw'

/** Guesses the format of `storage` from its first bytes. */
export async function probeFormat(storage: ReadableStorage): Promise<ProbedFormat> {
  const size = await storage.size()
  if (size < 8) return 'raw'
  const head = await storage.read(0, 8)
  const view = new DataView(head.buffer, head.byteOffset, 8)
  if (view.getUint32(0) !== 0x514649fb) return 'raw'
  const version = view.getUint32(4)
  if (version === 1) return 'qcow'
  return version >= 2 ? 'qcow2' : 'raw'
}
