// Opening an image with its backing chain: format from the caller, the image or probing;
// names resolved against the overlay's directory as QEMU does; protocol and json: names never
// interpreted; cycles and absurd depth refused; a policy can refuse every file an image names.
import type { Codecs, Compressors } from '../codecs.js'
import type { CryptoProvider } from '../crypto/provider.js'
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { findFormatModule, formatModules } from '../formats.js'
import { BlockDevice } from './device.js'
import type { FormatDriver } from './driver.js'
import type { FormatModule, FormatOpenContext } from './module.js'
import { probeFormat } from './probe.js'
import { pathCombine } from './path-combine.js'

export { pathCombine }

/** Deepest chain qimg follows (QEMU has no fixed limit; anything deeper is an attack or a loop). */
export const MAX_CHAIN_DEPTH = 64

/** How files named inside an image (backing file, external data file) are treated. */
export type FileReferencePolicy =
  | 'follow' // open them (plain paths only)
  | 'deny' // refuse to open an image that needs one: for untrusted images
  | 'ignore' // do not open the backing file (info) nor optional files (a data file); an image's own parts (VMDK extents) open
  | 'ignore-untrusted' // 'ignore' for an untrusted image: no file it names opens at all (info --untrusted)

/** What the chain opener needs from its host (Node: node:fs; tests: memory). */
export interface FileHost {
  /** Opens a file named by an image (already resolved against the overlay's directory). */
  open(path: string, options?: { writable?: boolean }): Promise<ReadableStorage>
  /** A canonical key for cycle detection (Node: realpath). */
  canonical(path: string): Promise<string>
  /**
   * Optional: where a name found inside image `base` points (default: QEMU's path_combine).
   * A host of URLs resolves against the image's URL and throws DENIED for names its policy
   * refuses (absolute paths, other origins).
   */
  resolve?(base: string, name: string): string
}

/** `name` (found inside image `base`) resolved by the host's rule. */
export function resolveName(host: FileHost, base: string, name: string): string {
  return host.resolve ? host.resolve(base, name) : pathCombine(base, name)
}

/** Options for {@link openChain}. */
export interface OpenChainOptions {
  /** Format of the top image; probed when absent. */
  format?: string | undefined
  codecs?: Codecs | undefined
  /** Compressors for compressed writes to the top image. */
  compressors?: Compressors | undefined
  /** Read the top image at this internal snapshot. */
  snapshot?: string | { id?: string; name?: string } | undefined
  /** Default 'follow'. */
  fileReferences?: FileReferencePolicy | undefined
  /** Overrides the backing file format the image records (qemu-img's -F for some commands). */
  backingFormat?: string | undefined
  l2CacheSize?: number | undefined
  host?: FileHost | undefined
  /** Open the top image for writing (backing files stay read-only). */
  writable?: boolean | undefined
  /** Ciphers, hashes and PBKDF2 for encrypted images. */
  crypto?: CryptoProvider | undefined
  /** The top image's LUKS passphrase or AES key, asked for only when it is encrypted. */
  secret?: (() => Promise<Uint8Array | undefined>) | undefined
  /** Open to describe only (info): encrypted images open without their secret. */
  metadataOnly?: boolean | undefined
  /** The top image's external data file, opened by the caller (the user's data-file option). */
  dataFile?: ReadableStorage | undefined
  /** The formats to open and probe (default: every format qimg has). */
  modules?: readonly FormatModule[] | undefined
  /** Lines an open prints on its own (QEMU's fprintf(stderr)): the repair of a dirty image. */
  report?: ((line: string) => void) | undefined
}

/** True for names QEMU would treat as a protocol or json: specification rather than a file. */
export function namesProtocol(name: string): boolean {
  if (/^[A-Za-z]:[\\/]/.test(name)) return false
  const stop = name.search(/[:/\\]/)
  return stop >= 0 && name[stop] === ':'
}

/** Checks a file name found inside an image before anything opens it. */
export function checkReferencedName(image: string, what: string, name: string): void {
  if (name.length === 0) throw new ImageError('CORRUPT', `${image}: empty ${what} name`, { file: image })
  if (namesProtocol(name)) {
    throw new ImageError('DENIED', `${image}: ${what} '${name}' is a protocol or json: specification; qimg only opens plain file names`, { file: image })
  }
  if (name.includes('\0')) throw new ImageError('CORRUPT', `${image}: ${what} name contains a NUL byte`, { file: image })
}

/** Opens one layer with a known or probed format, through its format module. */
export async function openDriver(storage: ReadableStorage, format: string | undefined, options: OpenChainOptions, forTop: boolean): Promise<FormatDriver> {
  const modules = options.modules ?? formatModules
  const fmt = format ?? await probeFormat(storage, modules)
  const module = findFormatModule(fmt, modules)
  if (!module) throw new ImageError('INVALID_ARGUMENT', `Unknown driver '${fmt}'`)
  const policy = options.fileReferences ?? 'follow'
  const writable = forTop && (options.writable ?? false)
  const host = options.host
  return module.open(storage, {
    writable,
    top: forTop,
    codecs: options.codecs,
    compressors: options.compressors,
    crypto: options.crypto,
    secret: forTop ? options.secret : undefined,
    metadataOnly: options.metadataOnly ?? false,
    snapshot: forTop ? options.snapshot : undefined,
    l2CacheSize: options.l2CacheSize,
    report: forTop ? options.report : undefined,
    skipReferencedFiles: policy === 'ignore' || policy === 'ignore-untrusted',
    dataFile: forTop ? options.dataFile : undefined,
    // Under 'ignore' files an image is made of (VMDK extents) still open; modules skip the
    // optional ones (a qcow2 data file) by skipReferencedFiles.
    openReferenced: (policy === 'follow' || policy === 'ignore') && host ? referencedOpener(storage.name, host) : undefined,
  })
}

/**
 * The opener of files an image named `image` names other than its backing file: the name
 * checked, resolved against the image's directory, and failures prefixed with what it is.
 */
export function referencedOpener(image: string, host: FileHost): NonNullable<FormatOpenContext['openReferenced']> {
  return async (name, what, openOptions) => {
    checkReferencedName(image, what, name)
    const path = resolveName(host, image, name)
    return host.open(path, { writable: openOptions?.writable ?? false }).catch((cause: unknown) => {
      // Say which image names the file (QEMU: "Could not open 'img': Could not open 'data': …").
      if (cause instanceof ImageError) throw new ImageError(cause.code, `${image}: Could not open ${what}: ${cause.message}`, { cause, file: path })
      throw cause
    })
  }
}

/** Opens `storage` as the top of a chain and follows its backing files per `options`. */
/**
 * bdrv_open_backing_file: a backing file that cannot be opened fails its parent with "Could not
 * open backing file: " before the reason, once per level of the chain above it.
 */
export function backingError(cause: unknown, depth: number, path: string): unknown {
  if (!(cause instanceof ImageError)) return cause
  const prefix = 'Could not open backing file: '.repeat(depth)
  return new ImageError(cause.code, `${prefix}${cause.message}`, {
    cause, file: cause.file ?? path, ...(cause.qemuText === undefined ? {} : { qemuText: `${prefix}${cause.qemuText}` }),
  })
}

export async function openChain(storage: ReadableStorage, options: OpenChainOptions = {}): Promise<BlockDevice> {
  const policy = options.fileReferences ?? 'follow'
  const opened: FormatDriver[] = []
  try {
    const top = await openDriver(storage, options.format, options, true)
    opened.push(top)
    const seen = new Set<string>()
    if (options.host) seen.add(await options.host.canonical(storage.name).catch(() => storage.name))
    let driver = top
    while (driver.backing && policy !== 'ignore' && policy !== 'ignore-untrusted') {
      const name = driver.backing.name
      if (policy === 'deny') {
        throw new ImageError('DENIED', `${driver.storage.name}: the image names backing file '${name}' and opening files named by images is not allowed`, { file: driver.storage.name })
      }
      checkReferencedName(driver.storage.name, 'backing file', name)
      if (!options.host) throw new ImageError('DENIED', `${driver.storage.name}: backing file '${name}' cannot be opened without a file host`)
      if (opened.length >= MAX_CHAIN_DEPTH) throw new ImageError('CORRUPT', `${storage.name}: backing chain is deeper than ${MAX_CHAIN_DEPTH} images`, { file: storage.name })
      const path = resolveName(options.host, driver.storage.name, name)
      const key = await options.host.canonical(path).catch(() => path)
      if (seen.has(key)) throw new ImageError('CORRUPT', `${driver.storage.name}: backing file '${name}' forms a loop in the backing chain`, { file: driver.storage.name, qemuText: `Backing file '${path}' creates an infinite loop.` })
      seen.add(key)
      const depth = opened.length
      let backingStorage: ReadableStorage
      try {
        backingStorage = await options.host.open(path)
      } catch (cause) {
        throw backingError(cause, depth, path)
      }
      const format = (driver === top ? options.backingFormat : undefined) ?? driver.backing.format
      const next = await openDriver(backingStorage, format, options, false).catch(async (e: unknown) => {
        await backingStorage.close()
        throw backingError(e, depth, path)
      })
      opened.push(next)
      driver = next
    }
  } catch (e) {
    for (const d of opened) await d.close().catch(() => undefined)
    throw e
  }
  let device: BlockDevice | undefined
  for (let i = opened.length - 1; i >= 0; i--) device = new BlockDevice(opened[i]!, device)
  return device!
}
