// Creating a qcow2 image in an empty storage as qcow2_co_create does: the skeleton (header,
// refcount table and block), the L1 table grown to the size, preallocation, then encryption
// last; an external data file created first, with the image's size.
import { ImageError } from '../errors.js'
import type { CryptoProvider } from '../crypto/provider.js'
import { resolveLuksOptions } from '../crypto/luks.js'
import { borrowed } from '../io/borrowed.js'
import type { Storage } from '../io/storage.js'
import { RawImage } from '../raw.js'
import { resolveCreateOptions, writeSkeleton, type Qcow2CreateOptions } from './create.js'
import { Qcow2Image } from './image.js'
import { sizeNewImage } from './resize.js'
import { setUpAesEncryption, setUpLuksEncryption } from './crypto/setup.js'

/** What creating a qcow2 image needs besides its options. */
export interface Qcow2CreateHost {
  /** The LUKS passphrase (or AES key) when the image is encrypted. */
  secret: Uint8Array | undefined
  crypto: CryptoProvider | undefined
  /** Creates, empty, the external data file the options name (as the image names it). */
  createDataFile?: ((name: string) => Promise<Storage>) | undefined
  /** Deletes the data file again when the create fails, as qcow2_co_create_opts does. */
  removeDataFile?: ((name: string) => Promise<void>) | undefined
}

/** Writes a new qcow2 image into `storage` (which the caller opened, empty, and still owns). */
export async function createQcow2Image(storage: Storage, options: Qcow2CreateOptions, host: Qcow2CreateHost): Promise<void> {
  // qcow2_co_create_opts makes the files first and deletes them when the options fail.
  const o = resolveCreateOptions(options)
  if (o.size < 0) throw new ImageError('INVALID_ARGUMENT', 'Image size must be positive')
  if (o.encrypt && host.secret === undefined) throw new ImageError('BAD_KEY', `${storage.name}: Parameter 'encrypt.key-secret' is required for cipher`)
  if (o.encrypt && !host.crypto) throw new ImageError('UNSUPPORTED', `${storage.name}: no cipher provider on this host for an encrypted image`)
  // Nothing is written for a cipher or hash this host cannot run.
  if (o.encrypt?.format === 'luks') resolveLuksOptions(o.encrypt, host.crypto!)
  const dataStorage = o.dataFile === undefined ? undefined : await createDataFile(o.dataFile, o.size, o.preallocation, host)
  let done = false
  try {
    await writeSkeleton(storage, o)
    const image = await Qcow2Image.open(borrowed(storage), {
      writable: true,
      openDataFile: dataStorage && (async () => borrowed(dataStorage)),
    })
    try {
      await sizeNewImage(image, o.size, o.preallocation)
      // QEMU sets encryption up last: the LUKS area comes after the L1 table (and preallocated
      // clusters, which therefore hold plain zeros).
      if (o.encrypt?.format === 'aes') await setUpAesEncryption(image)
      else if (o.encrypt) await setUpLuksEncryption(image, host.crypto!, o.encrypt, host.secret!)
      if (o.dataFileRaw && dataStorage && (await dataStorage.size()) < o.size) await dataStorage.truncate(o.size)
    } finally {
      await image.close()
    }
    if (dataStorage) await dataStorage.flush()
    done = true
  } finally {
    await dataStorage?.close()
    if (!done && o.dataFile !== undefined) await host.removeDataFile?.(o.dataFile).catch(() => undefined)
  }
}

/** QEMU creates the data file as a raw image of the image's size (its preallocation, metadata aside). */
async function createDataFile(name: string, size: number, preallocation: Qcow2CreateOptions['preallocation'], host: Qcow2CreateHost): Promise<Storage> {
  if (!host.createDataFile) throw new ImageError('UNSUPPORTED', `cannot create the external data file '${name}' on this host`)
  const storage = await host.createDataFile(name)
  try {
    const mode = preallocation === undefined || preallocation === 'metadata' ? 'off' : preallocation
    const rounded = Math.ceil(size / 512) * 512
    if (rounded > 0) await (await RawImage.open(borrowed(storage), { writable: true })).setVirtualSize(rounded, mode)
    return storage
  } catch (e) {
    await storage.close().catch(() => undefined)
    throw e
  }
}
