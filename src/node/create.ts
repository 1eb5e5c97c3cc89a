// Creating images on disk: the file made empty, the format's module writes the image into it
// (as qemu-img create: the file protocol's create, then the format's), flushed.
import { unlink } from 'node:fs/promises'
import { pathCombine } from '../format/path-combine.js'
import { ImageError } from '../errors.js'
import { FileStorage } from '../io/file.js'
import type { Qcow2CreateOptions } from '../qcow2/create.js'
import { createQcow2Image } from '../qcow2/create-image.js'
import { rawModule } from '../raw-module.js'
import { qcow2Module } from '../qcow2/module.js'
import { nodeCrypto } from './crypto.js'
import type { CryptoProvider } from '../crypto/provider.js'
import type { FormatModule } from '../format/module.js'

/**
 * Creates a raw image of `size` bytes, rounded up to whole sectors as QEMU's file driver does.
 */
export async function createRaw(path: string, size: number, preallocation: 'off' | 'falloc' | 'full' = 'off'): Promise<void> {
  await createWithModule(path, rawModule, size, new Map([['preallocation', preallocation]]))
}

/** The secret (and crypto) for an encrypted image: the LUKS passphrase as bytes. */
export interface CreateSecret {
  secret: Uint8Array | undefined
  crypto?: CryptoProvider | undefined
}

/**
 * Creates a QCOW2 image at `path` (overwriting it, as qemu-img does) from typed options. An
 * encrypted image (`options.encrypt`) needs `encryption.secret`.
 */
export async function createQcow2(path: string, options: Qcow2CreateOptions, encryption: CreateSecret = { secret: undefined }): Promise<void> {
  await createFile(path, qcow2Module, (storage) => createQcow2Image(storage, options, {
    secret: encryption.secret,
    crypto: encryption.crypto ?? nodeCrypto,
    createDataFile: (name) => FileStorage.create(pathCombine(path, name)),
    removeDataFile: (name) => unlink(pathCombine(path, name)),
  }))
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
async function createFile(path: string, module: FormatModule, write: (storage: FileStorage) => Promise<void>): Promise<void> {
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
