// Creating images on disk: raw (a sized file) and QCOW2 (skeleton, L1 grown to the size,
// optional preallocation), as `qemu-img create` does.
import { unlink } from 'node:fs/promises'
import { pathCombine } from '../format/chain.js'
import { ImageError } from '../errors.js'
import { FileStorage } from '../io/file.js'
import { resolveCreateOptions, writeSkeleton, type Qcow2CreateOptions } from '../qcow2/create.js'
import { sizeNewImage } from '../qcow2/resize.js'
import { Qcow2Image } from '../qcow2/image.js'
import { RawImage } from '../raw.js'
import { nodeCodecs } from './codecs.js'
import { nodeCrypto } from './crypto.js'
import { setUpAesEncryption, setUpLuksEncryption } from '../qcow2/crypto/setup.js'
import { resolveLuksOptions } from '../crypto/luks.js'
import type { CryptoProvider } from '../crypto/provider.js'
import type { FormatModule } from '../format/module.js'

/**
 * Creates a raw image of `size` bytes, rounded up to whole sectors as QEMU's file driver does
 * (preallocation full writes zeros; otherwise the first block is written, as QEMU does to help
 * alignment probing, so the file's allocation matches too).
 */
export async function createRaw(path: string, size: number, preallocation: 'off' | 'falloc' | 'full' = 'off'): Promise<void> {
  size = Math.ceil(size / 512) * 512
  const storage = await FileStorage.create(path)
  try {
    // Growing the empty file is what QEMU's raw_co_create does (raw_regular_truncate).
    if (size > 0) await (await RawImage.open(storage, { writable: true })).setVirtualSize(size, preallocation)
    await storage.flush()
  } finally {
    await storage.close()
  }
}

/** The secret (and crypto) for an encrypted image: the LUKS passphrase as bytes. */
export interface CreateSecret {
  secret: Uint8Array | undefined
  crypto?: CryptoProvider | undefined
}

/**
 * Creates a QCOW2 image at `path` (overwriting it, as qemu-img does). An encrypted image
 * (`options.encrypt`) needs `encryption.secret`.
 */
export async function createQcow2(path: string, options: Qcow2CreateOptions, encryption: CreateSecret = { secret: undefined }): Promise<void> {
  const o = resolveCreateOptions(options)
  if (o.encrypt && encryption.secret === undefined) throw new ImageError('BAD_KEY', `${path}: Parameter 'encrypt.key-secret' is required for cipher`)
  // Nothing is written for a cipher or hash this host cannot run.
  if (o.encrypt?.format === 'luks') resolveLuksOptions(o.encrypt, encryption.crypto ?? nodeCrypto)
  // QEMU creates the data file with the image's size (and its preallocation, metadata aside).
  if (o.dataFile !== undefined) await createRaw(pathCombine(path, o.dataFile), o.size, o.preallocation === 'metadata' ? 'off' : o.preallocation)
  const skeleton = await FileStorage.create(path)
  try {
    await writeSkeleton(skeleton, o)
  } finally {
    await skeleton.close()
  }
  const storage = await FileStorage.open(path, { writable: true })
  const image = await Qcow2Image.open(storage, {
    writable: true,
    codecs: nodeCodecs,
    openDataFile: (name) => FileStorage.open(pathCombine(path, name), { writable: true }),
  }).catch(async (e) => {
    await storage.close()
    throw e
  })
  try {
    await sizeNewImage(image, o.size, o.preallocation)
    // QEMU sets encryption up last: the LUKS area comes after the L1 table (and preallocated
    // clusters, which therefore hold plain zeros).
    if (o.encrypt?.format === 'aes') await setUpAesEncryption(image)
    else if (o.encrypt && encryption.secret) await setUpLuksEncryption(image, encryption.crypto ?? nodeCrypto, o.encrypt, encryption.secret)
    if (o.dataFileRaw) {
      const data = image.dataStorage as FileStorage
      if ((await data.size()) < o.size) await data.truncate(o.size)
    }
  } finally {
    await image.close()
  }
  if (o.size < 0) throw new ImageError('INVALID_ARGUMENT', 'Image size must be positive')
}

/**
 * Creates an image of a format whose module creates it (every format but qcow2 and raw, which
 * have their own paths above): the file made empty, the module writes the image, flushed.
 */
export async function createWithModule(path: string, module: FormatModule, size: number, options: ReadonlyMap<string, string>, secret: Uint8Array | undefined): Promise<void> {
  if (!module.create) throw new ImageError('UNSUPPORTED', `Format '${module.name}' does not support image creation`)
  module.checkCreateOptions?.(options)
  const storage = await FileStorage.create(path)
  try {
    await module.create({
      storage, size, options, secret, crypto: nodeCrypto, compressors: undefined,
      createFile: (file) => FileStorage.create(file),
      openFile: (name) => FileStorage.open(pathCombine(path, name)),
    })
    await storage.flush()
  } catch (e) {
    await storage.close().catch(() => undefined)
    if (module.removeOnCreateFailure) await unlink(path).catch(() => undefined)
    throw e
  }
  await storage.close()
}
