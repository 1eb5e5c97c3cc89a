// Creating images on disk: the file made empty, the format's module writes the image into it
// (as qemu-img create: the file protocol's create, then the format's), flushed.
import { mkdtemp, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathCombine } from '../format/path-combine.js'
import { ImageError } from '../errors.js'
import { FileStorage } from '../io/file.js'
import { SNAPSHOT_OVERLAY_FORMAT, findFormatModule } from '../formats.js'
import { nodeCrypto } from './crypto.js'
import type { FormatModule } from '../format/module.js'

/**
 * Creates, in a new temporary directory, the overlay BDRV_O_SNAPSHOT puts over an image
 * (qemu-io -s, qemu-nbd -s): of the format formats.ts names for it, `size` bytes, backed by
 * `backingFile` (made absolute) of `backingFormat`. Gives its path and format, and the cleanup
 * that removes the directory.
 */
export async function createSnapshotOverlay(prefix: string, size: number, backingFile: string, backingFormat: string): Promise<{ path: string; format: string; cleanup: () => Promise<void> }> {
  const module = findFormatModule(SNAPSHOT_OVERLAY_FORMAT)!
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const cleanup = () => rm(dir, { recursive: true, force: true })
  const path = join(dir, `overlay.${module.name}`)
  try {
    await createWithModule(path, module, size, new Map([['backing_file', resolve(backingFile)], ['backing_fmt', backingFormat]]))
  } catch (e) {
    await cleanup()
    throw e
  }
  return { path, format: module.name, cleanup }
}

/**
 * Creates an image of any format whose module creates it, from its -o options: the file made
 * empty, the module writes the image, flushed. The secret the options name (qcow2's
 * encrypt.key-secret, luks' key-secret) is asked of `lookupSecret` after the module's own checks
 * of its options, as QEMU's QAPI checks come before its crypto looks a secret up; gives it.
 */
export async function createWithModule(name: string, module: FormatModule, size: number, options: ReadonlyMap<string, string>, lookupSecret?: (id: string) => Uint8Array): Promise<Uint8Array | undefined> {
  // The file protocol takes its own prefix off the name (raw_co_create_opts).
  const path = name.startsWith('file:') ? name.slice('file:'.length) : name
  if (!module.create) throw new ImageError('UNSUPPORTED', `Format '${module.name}' does not support image creation`)
  module.checkCreateOptions?.(options)
  const secretId = options.get('encrypt.key-secret') ?? options.get('key-secret')
  const secret = secretId === undefined ? undefined : lookupSecret?.(secretId)
  await createFile(path, module, (storage) => module.create!({
    storage, size, options, secret, crypto: nodeCrypto, compressors: undefined,
    createFile: (file) => FileStorage.create(file),
    removeFile: (file) => unlink(file),
    openFile: (name) => FileStorage.open(pathCombine(path, name)),
  }))
  return secret
}

/** The file at `path` made empty, `write` fills it, flushed; a failed create of some formats deletes it. */
export async function createFile(path: string, module: FormatModule, write: (storage: FileStorage) => Promise<void>): Promise<void> {
  const storage = await FileStorage.create(path)
  try {
    await write(storage)
    await storage.flush()
  } catch (e) {
    await storage.close().catch(() => undefined)
    if (module.removeOnCreateFailure) await unlink(path).catch(() => undefined)
    throw e
  }
  await storage.close()
}
