// The Node API's typed creates (index.ts: createRaw, createQcow2): a program's shortcut to
// two formats, over the same file handling as every other create (create.ts). The CLI creates
// through the format modules instead.
import { unlink } from 'node:fs/promises'
import { pathCombine } from '../format/path-combine.js'
import { FileStorage } from '../io/file.js'
import type { CryptoProvider } from '../crypto/provider.js'
import type { Qcow2CreateOptions } from '../qcow2/create.js'
import { createQcow2Image } from '../qcow2/create-image.js'
import { qcow2Module } from '../qcow2/module.js'
import { rawModule } from '../raw-module.js'
import { createFile, createWithModule } from './create.js'
import { nodeCrypto } from './crypto.js'

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
