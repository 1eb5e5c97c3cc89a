// Opening a block graph the user described with options (json: file names, --image-opts, a
// protocol prefix): format nodes (qcow2, raw) over protocol nodes (file, blkdebug), with
// `backing` and `data-file` children. Follows QEMU's block.c (bdrv_open_inherit,
// bdrv_fill_options: a format node's `filename` goes to its file child, where a protocol prefix
// is parsed) and its messages. Names stored inside images stay plain paths (chain.ts).
import { readFile, stat } from 'node:fs/promises'
import { ImageError } from '../errors.js'
import { backingError, checkReferencedName, openDriver, pathCombine, type OpenChainOptions } from '../format/chain.js'
import type { FormatDriver } from '../format/driver.js'
import { formatModules } from '../formats.js'
import { BlockDevice } from '../format/device.js'
import { DeviceStorage } from '../format/device-storage.js'
import { nodeFilename, type FullOptions, type NodeName } from '../format/graph-name.js'
import { toQemuJson } from '../cli/qjson.js'
import { boolValue, hasOption, sizeValue, stringValue, subOptions, type FlatOptions } from '../format/option-map.js'
import { BlkdebugStorage } from '../io/blkdebug.js'
import { blkdebugRules, parseBlkdebugConfig } from '../io/blkdebug-rules.js'
import type { RequestLimits } from '../io/request-limits.js'
import { ioError, FileStorage } from '../io/file.js'
import type { ReadableStorage } from '../io/storage.js'
import { HttpStorage } from '../io/http.js'
import { NullStorage } from '../io/null.js'
import { RawImage } from '../raw.js'
import { nbdAddress, nbdFilenameOptions } from './nbd-options.js'
import type { NbdStorageOptions } from './nbd-storage.js'
import { nodeChainOptions, openImage, stderrReport, type OpenImageOptions } from './open.js'

/** What opening from options needs besides the options. */
export interface GraphOpenOptions extends OpenImageOptions {
  /** The secret named by encrypt.key-secret (undefined: the caller's default, e.g. a prompt). */
  keySecret?: ((id: string | undefined, file: string) => OpenImageOptions['secret']) | undefined
  /** --object tls-creds-x509 / tls-creds-psk texts, for an nbd node's tls-creds. */
  tlsObjects?: readonly string[]
}

/** Every format module's name is a format driver here (src/formats.ts is the one list). */
const FORMATS = new Set(formatModules.map((m) => m.name))
const PROTOCOLS = new Set(['file', 'host_device', 'host_cdrom', 'blkdebug', 'null-co', 'null-aio', 'nbd', 'http', 'https', 's3'])

/** True when `driver` names a protocol (a node over bytes, not an image format). */
export function isProtocolDriver(driver: string): boolean {
  return PROTOCOLS.has(driver)
}

/** Options every node takes (block.c bdrv_runtime_opts and the cache/read-only flags). */
const NODE_KEYS = ['driver', 'filename', 'node-name', 'read-only', 'auto-read-only', 'force-share', 'discard', 'detect-zeroes', 'cache.direct', 'cache.no-flush', 'cache.writeback']
const DRIVER_KEYS: Record<string, string[]> = {
  file: ['filename', 'aio', 'aio-max-batch', 'locking', 'pr-manager', 'drop-cache', 'x-check-cache-dropped'],
  host_device: ['filename', 'aio', 'aio-max-batch', 'locking', 'pr-manager', 'drop-cache', 'x-check-cache-dropped'],
  host_cdrom: ['filename', 'aio', 'aio-max-batch', 'locking', 'pr-manager', 'drop-cache', 'x-check-cache-dropped'],
  blkdebug: ['config', 'x-image', 'align', 'max-transfer', 'opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard'],
  raw: ['offset', 'size'],
  luks: ['key-secret'],
  vdi: [],
  'copy-on-read': ['bottom'],
  'null-co': ['size', 'latency-ns', 'read-zeroes'],
  'null-aio': ['size', 'latency-ns', 'read-zeroes'],
  s3: ['filename'],
  nbd: ['export', 'path', 'host', 'port', 'tls-creds', 'tls-hostname', 'x-dirty-bitmap', 'reconnect-delay', 'open-timeout'],
  // block/curl.c's options qimg reads by URL (readahead, timeout, sslverify accepted; requests
  // are sized by HttpStorage)
  http: ['url', 'readahead', 'timeout', 'cookie'],
  https: ['url', 'readahead', 'timeout', 'cookie', 'sslverify'],
  qcow2: ['lazy-refcounts', 'pass-discard-request', 'pass-discard-snapshot', 'pass-discard-other', 'overlap-check', 'cache-size',
    'l2-cache-size', 'l2-cache-entry-size', 'refcount-cache-size', 'cache-clean-interval', 'encrypt.key-secret', 'encrypt.format'],
  qcow: ['encrypt.key-secret', 'encrypt.format'],
}
/** Children (whole subtrees) each driver takes. */
const DRIVER_CHILDREN: Record<string, string[]> = {
  file: [], host_device: [], host_cdrom: [], s3: [], 'null-co': [], 'null-aio': [], nbd: ['server'], blkdebug: ['image', 'inject-error', 'set-state', 'take-child-perms', 'unshare-child-perms'], raw: ['file'], luks: ['file'], vdi: ['file'], 'copy-on-read': ['file'],
  qcow2: ['file', 'backing', 'data-file', 'overlap-check'],
  qcow: ['file', 'backing'],
}

/** qobject_to_json of a node's options (one line). */
const qdictJson = (options: FullOptions): string => toQemuJson(options, false)

function invalid(message: string): ImageError {
  return new ImageError('INVALID_ARGUMENT', message)
}

/** Refuses options the driver does not take, with QEMU's message (bdrv_open_common). */
function checkKeys(options: FlatOptions, driver: string): void {
  // A format with no entry takes no options of its own and the children every image may have.
  const keys = new Set([...NODE_KEYS, ...(DRIVER_KEYS[driver] ?? [])])
  const children = DRIVER_CHILDREN[driver] ?? ['file', 'backing']
  for (const key of options.keys()) {
    if (keys.has(key) || children.some((c) => key === c || key.startsWith(c + '.'))) continue
    throw invalid(PROTOCOLS.has(driver) ? `Block protocol '${driver}' doesn't support the option '${key}'` : `Block format '${driver}' does not support the option '${key}'`)
  }
  boolValue(options, 'read-only')
  for (const key of ['cache.direct', 'cache.no-flush']) boolValue(options, key)
}

/** A child given as a plain string names another node (QEMU: a node reference); qimg has none. */
function checkNoReference(options: FlatOptions, child: string): void {
  const reference = options.get(child)
  if (typeof reference === 'string' && reference !== '') throw invalid(`Cannot find device='${reference}' nor node-name='${reference}'`)
}

/** The protocol a file name starts with (path_has_protocol: a colon before any slash). */
export function protocolPrefix(filename: string): string | undefined {
  const stop = filename.search(/[:/]/)
  return stop > 0 && filename[stop] === ':' ? filename.slice(0, stop) : undefined
}

/** The options a file name stands for when its protocol prefix is parsed (bdrv_find_protocol). */
export function filenameOptions(filename: string): FlatOptions {
  const protocol = protocolPrefix(filename)
  if (protocol === undefined) return new Map([['driver', 'file'], ['filename', filename]])
  if (protocol === 'file') {
    // bdrv_parse_filename_strip_prefix: a colon before the first slash of what is left would read
    // as a protocol again, so such a name is kept as "./NAME".
    const rest = filename.slice('file:'.length)
    return new Map([['driver', 'file'], ['filename', protocolPrefix(rest) === undefined ? rest : `./${rest}`]])
  }
  if (protocol === 'blkdebug') {
    // blkdebug_parse_filename: blkdebug:[CONFIG]:IMAGE
    const rest = filename.slice('blkdebug:'.length)
    const colon = rest.indexOf(':')
    if (colon < 0) throw invalid('blkdebug requires both config file and image path')
    const options: FlatOptions = new Map([['driver', 'blkdebug'], ['x-image', rest.slice(colon + 1)]])
    if (colon > 0) options.set('config', rest.slice(0, colon))
    return options
  }
  if (protocol === 'null-co' || protocol === 'null-aio') {
    // null_co_parse_filename: the name is only a way to select the driver.
    if (filename !== `${protocol}://`) throw invalid(`The only allowed filename for this driver is '${protocol}://'`)
    return new Map([['driver', protocol]])
  }
  if (protocol === 'nbd' || protocol === 'nbd+unix' || protocol === 'nbd+tcp') return nbdFilenameOptions(filename)
  if (protocol === 's3') return new Map([['driver', 's3'], ['filename', filename]])
  // curl_parse_filename: the whole name is the URL.
  if (protocol === 'http' || protocol === 'https') return new Map([['driver', protocol], ['url', filename]])
  throw invalid(`Unknown protocol '${protocol}'`)
}

/** An opened protocol node: its bytes and how QEMU would name it. */
export interface ProtocolNode {
  storage: ReadableStorage
  name: NodeName
  /** False for a format node under another (its guest bytes are the storage). */
  protocol: boolean
  /**
   * The format node whose guest bytes this node's storage is, directly or through filters
   * (blkdebug over qcow2): block status and allocation come from it, as QEMU's
   * bdrv_co_block_status passes a filter's BDRV_BLOCK_RAW answer down to the child.
   */
  statusFrom?: BlockDevice
}

/** The strong options (append_strong_runtime_options) of a node, in the driver's order. */
function strongOptions(options: FlatOptions, driver: string, keys: readonly string[]): FullOptions {
  const full: FullOptions = { driver }
  for (const key of keys) {
    if (key.endsWith('.')) {
      for (const [k, v] of options) if (k.startsWith(key)) full[k] = v
    } else if (options.has(key)) {
      full[key] = options.get(key)!
    }
  }
  return full
}

const STRONG: Record<string, readonly string[]> = {
  file: ['filename'],
  blkdebug: ['config', 'inject-error.', 'set-state.', 'align', 'max-transfer', 'opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard'],
  raw: ['offset', 'size'],
  qcow2: ['encrypt.key-secret'],
  luks: ['key-secret'],
  vdi: [],
  qcow: ['encrypt.key-secret'],
  'null-co': ['size', 'read-zeroes'],
  'null-aio': ['size', 'read-zeroes'],
}

/**
 * Opens a child node: bytes for a format driver (bdrv_open_child_bs). `given`: a name the parent
 * passed as such, beside the options; only such a name may carry a protocol prefix.
 */
export async function openProtocol(options: FlatOptions, base: GraphOpenOptions, given?: string): Promise<ProtocolNode> {
  let driver = stringValue(options, 'driver')
  if (driver !== undefined && FORMATS.has(driver)) return openInnerFormat(options, base, given)
  options = withFilename(options, given)
  const parse = given !== undefined
  const explicitDriver = driver !== undefined
  const filename = stringValue(options, 'filename')
  if (driver === undefined || (parse && filename !== undefined && driver === protocolPrefix(filename))) {
    if (filename === undefined) throw invalid('Must specify either driver or file')
    if (parse) {
      const parsed = filenameOptions(filename)
      options = new Map([...options].filter(([k]) => k !== 'filename' && k !== 'driver'))
      for (const [k, v] of parsed) options.set(k, v)
    } else {
      options = new Map([...options, ['driver', 'file']])
    }
    driver = stringValue(options, 'driver')!
  }
  if (!PROTOCOLS.has(driver)) throw invalid(`Unknown driver '${driver}'`)
  checkKeys(options, driver)
  if (driver === 'file' || driver === 'host_device' || driver === 'host_cdrom') {
    const name = stringValue(options, 'filename')
    if (name === undefined) throw invalid(`The '${driver}' block driver requires a file name`)
    const storage = await FileStorage.open(name, { writable: base.writable ?? false, sync: base.cache !== 'unsafe' && boolValue(options, 'cache.no-flush') !== true })
    await checkFileKind(driver, name, explicitDriver).catch(async (e: unknown) => {
      await storage.close()
      throw e
    })
    return { storage, name: { full: { driver, filename: name }, plain: name }, protocol: true }
  }
  if (driver === 'null-co' || driver === 'null-aio') {
    const full = strongOptions(options, driver, STRONG[driver]!)
    const storage = new NullStorage(`${driver}://`, sizeValue(options, 'size') ?? 2 ** 30, boolValue(options, 'read-zeroes') ?? false)
    // null_refresh_filename: "null-co://" unless strong options were given.
    return { storage, name: { full, plain: Object.keys(full).length === 1 ? `${driver}://` : undefined }, protocol: true }
  }
  if (driver === 'nbd') {
    // Loaded only for an NBD export: node:net and the NBD client stay out of every other start-up.
    const { NbdStorage } = await import('./nbd-storage.js')
    const address = nbdAddress(options)
    const tlsId = stringValue(options, 'tls-creds')
    let tls: NbdStorageOptions['tls']
    if (tlsId !== undefined) {
      const { clientTls, findTlsCreds } = await import('./tls-creds.js')
      // nbd_process_options: a TCP host is the certificate's name unless tls-hostname says otherwise.
      tls = clientTls(await findTlsCreds(base.tlsObjects ?? [], tlsId), stringValue(options, 'tls-hostname') ?? (address.type === 'inet' ? address.host : undefined))
    }
    const storage = await NbdStorage.open(address, { writable: base.writable ?? false, ...(tls ? { tls } : {}) })
    return { storage, name: { full: strongOptions(options, driver, ['server.', 'export']), plain: storage.name }, protocol: true }
  }
  if (driver === 's3') {
    const name = stringValue(options, 'filename')
    if (name === undefined) throw invalid("The 's3' block driver requires a file name (s3://BUCKET/KEY)")
    if (base.writable) throw new ImageError('READ_ONLY', `${name}: an S3 object opens read-only (convert writes one as its output)`)
    const { openS3 } = await import('./s3.js')
    return { storage: await openS3(name), name: { full: { driver, filename: name }, plain: name }, protocol: true }
  }
  if (driver === 'http' || driver === 'https') {
    const url = stringValue(options, 'url')
    if (url === undefined) throw invalid(`The '${driver}' block driver requires a url`)
    if (!url.toLowerCase().startsWith(`${driver}://`)) throw invalid(`Unknown protocol '${url.slice(0, url.indexOf(':'))}'`)
    const storage = await HttpStorage.open(url)
    return { storage, name: { full: { driver, url }, plain: url }, protocol: true }
  }
  return openBlkdebug(options, base, given)
}

/** A format under a format (qcow2 in qcow2): the inner image's guest bytes are the outer's file. */
async function openInnerFormat(options: FlatOptions, base: GraphOpenOptions, given: string | undefined): Promise<ProtocolNode> {
  const { device, name } = await openNode(options, base, given)
  return { storage: new DeviceStorage(device, nodeFilename(name, qdictJson)), name: { full: name.full, plain: undefined }, protocol: false, statusFrom: device }
}

/**
 * raw_open_common's checks (file-posix.c): the file driver, when named, takes only regular files;
 * host_device and host_cdrom only character or block devices.
 */
async function checkFileKind(driver: string, name: string, explicit: boolean): Promise<void> {
  const info = await stat(name)
  if (driver === 'file') {
    if (explicit && !info.isFile()) throw invalid(`'file' driver requires '${name}' to be a regular file`)
  } else if (!info.isCharacterDevice() && !info.isBlockDevice()) {
    throw invalid(`'${driver}' driver requires '${name}' to be either a character or block device`)
  }
}

/** blkdebug_open: rules from the config file and the options, then the image child. */
async function openBlkdebug(options: FlatOptions, base: GraphOpenOptions, given: string | undefined): Promise<ProtocolNode> {
  const config = stringValue(options, 'config')
  let sections = [] as ReturnType<typeof parseBlkdebugConfig>
  if (config !== undefined) {
    const text = await readFile(config, 'utf8').catch((cause: unknown) => {
      throw invalid(ioError(config, 'read', cause).message.replace(`Could not read '${config}'`, 'Could not read blkdebug config file'))
    })
    sections = parseBlkdebugConfig(text, config)
  }
  const rules = blkdebugRules(sections, options)
  const align = sizeValue(options, 'align') ?? 0
  if (align && (align >= 2 ** 31 - 1 || (align & (align - 1)) !== 0)) throw invalid(`Cannot meet constraints with align ${align}`)
  checkNoReference(options, 'image')
  // blkdebug_parse_filename: a name given as such (never a filename option) without the
  // blkdebug: prefix is the image child's, whole.
  const xImage = stringValue(options, 'x-image') ?? given
  let image: ProtocolNode
  // bdrv_open_child(x-image, options, "image"): the parsed name is the image child's own name.
  if (hasOption(options, 'image') || xImage !== undefined) image = await openProtocol(subOptions(options, 'image'), base, xImage)
  else throw invalid('A block device must be specified for "image"')
  // blkdebug_refresh_filename: blkdebug:CONFIG:IMAGE unless options other than config were given.
  const full = strongOptions(options, 'blkdebug', STRONG['blkdebug']!)
  full['image'] = image.name.full
  const plain = image.name.plain !== undefined && Object.keys(full).every((k) => k === 'driver' || k === 'config' || k === 'image')
  const limits: RequestLimits = {
    requestAlignment: align || 1,
    maxTransfer: sizeValue(options, 'max-transfer') ?? 0,
    writeZeroesAlignment: sizeValue(options, 'opt-write-zero') ?? 0,
    maxWriteZeroes: sizeValue(options, 'max-write-zero') ?? 0,
    discardAlignment: sizeValue(options, 'opt-discard') ?? 0,
    maxDiscard: sizeValue(options, 'max-discard') ?? 0,
  }
  const node: ProtocolNode = { storage: new BlkdebugStorage(image.storage, rules, limits), name: { full, plain: plain ? `blkdebug:${config ?? ''}:${image.name.plain}` : undefined }, protocol: true }
  // blkdebug is a filter (is_filter): its block status is its image child's.
  if (image.statusFrom) node.statusFrom = image.statusFrom
  return node
}

/**
 * Opens a format node (or a protocol node read as raw bytes) with its children. `filename`: a name
 * the user gave as such (bdrv_open's filename argument), not a `filename` option: only a name
 * goes to the file child and has its protocol prefix parsed.
 */
export async function openGraph(options: FlatOptions, base: GraphOpenOptions, filename?: string): Promise<BlockDevice> {
  const { device, name } = await openNode(options, base, filename)
  device.label = nodeFilename(name, qdictJson)
  return device
}

async function openNode(options: FlatOptions, base: GraphOpenOptions, filename?: string): Promise<{ device: BlockDevice; name: NodeName }> {
  // A node the user made read-only cannot serve a command that writes (bdrv_open_common's check).
  if (boolValue(options, 'read-only') === true && base.writable) throw new ImageError('READ_ONLY', 'Block node is read-only')
  const driver = stringValue(options, 'driver') ?? base.format
  if (driver !== undefined && PROTOCOLS.has(driver)) {
    // bdrv_fill_options: a name given to a protocol driver becomes its filename option, its
    // prefix parsed (driver=blkdebug, blkdebug::IMG).
    const node = await openProtocol(options, base, filename)
    const device = new BlockDevice(await RawImage.open(node.storage, { writable: base.writable ?? false, format: driver }), undefined)
    device.filterOf = node.statusFrom
    return { device, name: node.name }
  }
  if (driver === 'copy-on-read') return openCopyOnRead(options, base, filename)
  if (driver !== undefined && !FORMATS.has(driver)) throw invalid(`Unknown driver '${driver}'`)
  if (driver !== undefined) checkKeys(options, driver)
  checkNoReference(options, 'file')
  const fileOptions = hasOption(options, 'file') ? subOptions(options, 'file') : undefined
  // bdrv_open_child_bs(filename, options, "file"): the name (never a format node's `filename`
  // option) goes to the file child beside its file.* options, its protocol prefix parsed there.
  if (fileOptions === undefined && filename === undefined) throw invalid(driver === undefined ? 'Must specify either driver or file' : 'A block device must be specified for "file"')
  const file = await openProtocol(fileOptions ?? new Map(), base, filename)
  try {
    const device = await openFormat(file.storage, driver, options, base)
    // bdrv_refresh_filename: the file's name unless strong options change what it opens as.
    const full = strongOptions(options, device.driver.format, STRONG[device.driver.format] ?? [])
    full['file'] = file.name.full
    const plain = Object.keys(full).length === 2 && file.protocol ? file.name.plain : undefined
    return { device, name: { full, plain } }
  } catch (e) {
    await file.storage.close().catch(() => undefined)
    throw e
  }
}

/**
 * The copy-on-read filter (block/copy-on-read.c) over its file child: reads through it copy
 * into the child what the child's backing chain supplies. It needs the child writable.
 */
async function openCopyOnRead(options: FlatOptions, base: GraphOpenOptions, filename: string | undefined): Promise<{ device: BlockDevice; name: NodeName }> {
  if (!base.writable) throw new ImageError('READ_ONLY', 'Block node is read-only')
  checkKeys(options, 'copy-on-read')
  checkNoReference(options, 'file')
  const file = await openProtocol(hasOption(options, 'file') ? subOptions(options, 'file') : new Map(), base, filename)
  const device = new BlockDevice(await RawImage.open(file.storage, { writable: true, format: 'copy-on-read' }), undefined)
  device.filterOf = file.statusFrom
  device.copyOnRead = true
  return { device, name: { full: { driver: 'copy-on-read', file: file.name.full }, plain: file.name.plain } }
}

/** The options of a protocol node with the name given beside them (bdrv_fill_options). */
function withFilename(options: FlatOptions, filename: string | undefined): FlatOptions {
  if (filename === undefined) return options
  if (options.has('filename')) throw invalid("Can't specify 'file' and 'filename' options at the same time")
  return new Map([...options, ['filename', filename]])
}

async function openFormat(storage: ReadableStorage, driver: string | undefined, options: FlatOptions, base: GraphOpenOptions): Promise<BlockDevice> {
  const keySecret = stringValue(options, 'encrypt.key-secret') ?? stringValue(options, 'key-secret')
  if (driver === 'raw' && (options.has('offset') || options.has('size'))) {
    const window = await rawWindow(storage, options)
    return new BlockDevice(await RawImage.open(storage, { writable: base.writable ?? false, window }), undefined)
  }
  const chain: OpenChainOptions & OpenImageOptions = {
    ...base,
    report: base.report ?? stderrReport,
    format: driver,
    ...(base.keySecret ? { secret: base.keySecret(keySecret, storage.name) } : {}),
  }
  checkNoReference(options, 'data-file')
  if (hasOption(options, 'data-file')) chain.dataFile = (await openProtocol(subOptions(options, 'data-file'), base)).storage
  const backing = options.get('backing')
  const backingGiven = hasOption(options, 'backing') && !options.has('backing')
  if (backingGiven && (base.fileReferences === 'ignore' || base.fileReferences === 'ignore-untrusted' || base.metadataOnly)) {
    // qemu-img info opens each image without its backing file (BDRV_O_NO_BACKING): nothing takes these options.
    const key = [...options.keys()].find((k) => k.startsWith('backing.'))!
    throw invalid(`Block format '${driver ?? 'qcow2'}' does not support the option '${key}'`)
  }
  if (backing === null || backing === '' || backingGiven) {
    // As openImage would open it (codecs, crypto), but without the backing file it names.
    const top = await openDriver(storage, driver, { ...nodeChainOptions(chain), fileReferences: base.fileReferences === 'deny' || base.fileReferences === 'ignore-untrusted' ? 'ignore-untrusted' : 'ignore' }, true)
    let below: BlockDevice | undefined
    try {
      below = backingGiven ? await openBackingOptions(top, subOptions(options, 'backing'), base) : undefined
    } catch (e) {
      await top.close().catch(() => undefined)
      throw e
    }
    return new BlockDevice(top, below)
  }
  checkNoReference(options, 'backing')
  return openImage(storage, chain)
}

/**
 * bdrv_open_backing_file with backing.* options: unless they name a file, the backing file is
 * still the one the image names (its format the default driver), opened with those options.
 */
async function openBackingOptions(top: FormatDriver, options: FlatOptions, base: GraphOpenOptions): Promise<BlockDevice> {
  let path: string | undefined
  if (!options.has('file.filename') && top.backing) {
    if (base.fileReferences === 'deny') throw new ImageError('DENIED', `${top.storage.name}: the image names backing file '${top.backing.name}' and opening files named by images is not allowed`, { file: top.storage.name })
    checkReferencedName(top.storage.name, 'backing file', top.backing.name)
    path = pathCombine(top.storage.name, top.backing.name)
    if (!options.has('driver') && top.backing.format !== undefined) options = new Map([...options, ['driver', top.backing.format]])
  }
  try {
    return await openGraph(options, { ...base, writable: false, format: undefined }, path)
  } catch (e) {
    throw backingError(e, 1, path ?? top.storage.name)
  }
}

/** raw_read_options: `size` bytes of the file from `offset` (both checked as QEMU does). */
async function rawWindow(storage: ReadableStorage, options: FlatOptions): Promise<{ offset: number; size: number }> {
  // bdrv_getlength: the file counts in whole 512-byte sectors.
  const fileSize = Math.ceil((await storage.size()) / 512) * 512
  const offset = sizeValue(options, 'offset') ?? 0
  if (offset > fileSize) throw invalid(`Offset (${offset}) cannot be greater than size of the containing file (${fileSize})`)
  const size = sizeValue(options, 'size')
  if (size !== undefined && fileSize - offset < size) {
    throw invalid(`The sum of offset (${offset}) and size (${size}) has to be smaller or equal to the  actual size of the containing file (${fileSize})`)
  }
  if (size !== undefined && size % 512 !== 0) throw invalid('Specified size is not multiple of 512')
  // The node's length is again whole sectors (total_sectors).
  return { offset, size: size ?? Math.ceil((fileSize - offset) / 512) * 512 }
}
