// qemu-io's open, close and reopen, and openfile(): how an image is opened from a name, an
// option string (-o, --image-opts) and the BDRV_O_* flags; -s puts a temporary overlay on top.
import { ImageError } from '../../errors.js'
import { createSnapshotOverlay } from '../../node/create.js'
import { openImage } from '../../node/open.js'
import { parseOptionString } from '../image-opts.js'
import { errorText } from '../context.js'
import { describesGraph, openOperandOptions, operandGraph, type OperandGraph } from '../block-options.js'
import { isProtocolDriver, openGraph } from '../../node/open-options.js'
import { loadSecrets, lookupSecret, promptedSecret } from '../secrets.js'
import { CommandOptions, EINVAL } from './args.js'
import { usage, type CommandInfo } from './command.js'
import { defaultOpenFlags, type OpenFlags, type OpenImage, type Session } from './session.js'

/** bdrv_parse_cache_mode: sets the writethrough and O_DIRECT flags; false for an unknown mode. */
export function parseCacheMode(mode: string, flags: OpenFlags): boolean {
  const modes: Record<string, [writethrough: boolean, direct: boolean]> = {
    off: [false, true], none: [false, true], directsync: [true, true], writeback: [false, false], unsafe: [false, false], writethrough: [true, false],
  }
  const chosen = modes[mode]
  if (!chosen) return false
  flags.writethrough = chosen[0]
  flags.cacheDirect = chosen[1]
  return true
}

/** bdrv_parse_aio: the AIO modes of QEMU 7.2 on Linux (how requests are issued: invisible here). */
export function parseAioMode(mode: string, flags: OpenFlags): boolean {
  if (mode !== 'threads' && mode !== 'native' && mode !== 'io_uring') return false
  flags.nativeAio = mode === 'native'
  return true
}

/** bdrv_parse_discard_flags: sets `flags.discardUnmap`; false for an unknown mode. */
export function parseDiscardMode(mode: string, flags: OpenFlags): boolean {
  if (mode === 'off' || mode === 'ignore') flags.discardUnmap = false
  else if (mode === 'on' || mode === 'unmap') flags.discardUnmap = true
  else return false
  return true
}

/** Opens the device of `name` (or of the options) with `flags`: the overlay of -s on top. */
/** Options qemu-io's open takes itself (the rest describe a block graph, opened as such). */
const PLAIN_KEYS = new Set(['driver', 'filename', 'file.filename', 'file', 'encrypt.key-secret', 'key-secret'])

/** The block graph `open` describes: the file name's own options (json:, prefixes), then -o's. */
function graphOptions(filename: string, format: string | undefined, options: Map<string, string>): OperandGraph {
  const graph: OperandGraph = filename === '' ? { options: new Map() } : operandGraph(filename, false, undefined)
  for (const [key, value] of options) if (key !== 'filename' && key !== 'file' && !(key === 'file.filename' && value === filename)) graph.options.set(key, value)
  if (format !== undefined) graph.options.set('driver', format)
  return graph
}

async function openDevice(session: Session, filename: string, format: string | undefined, options: Map<string, string>, flags: OpenFlags, named = true): Promise<OpenImage> {
  const keySecret = options.get('encrypt.key-secret') ?? options.get('key-secret')
  const secrets = await loadSecrets(session.objects)
  const secret = keySecret === undefined ? promptedSecret(filename) : async () => lookupSecret(secrets, keySecret)
  if (!flags.snapshot) {
    const describes = describesGraph(filename, false) || (format !== undefined && isProtocolDriver(format)) || [...options.keys()].some((key) => !PLAIN_KEYS.has(key))
    const graph = graphOptions(filename, format, options)
    const device = !describes
      ? await openImage(filename, { format, writable: !flags.readOnly, secret })
      // Without a name (open -o filename=…), blk_new_open reports the driver's own message.
      : named
        ? await openOperandOptions(filename, false, undefined, secrets, { writable: !flags.readOnly, secret }, graph)
        : await openGraph(graph.options, { writable: !flags.readOnly, secret, tlsObjects: secrets.tlsObjects ?? [], keySecret: (id, file) => id === undefined ? secret ?? promptedSecret(file) : async () => lookupSecret(secrets, id) }, graph.filename)
    return { device, flags, reopen: (f) => openDevice(session, filename, format, options, f, named) }
  }
  // BDRV_O_SNAPSHOT: a temporary overlay takes the writes; the image itself stays as it was.
  const base = await openImage(filename, { format, secret })
  const size = base.size
  const baseFormat = (await base.info()).format
  await base.close()
  const overlay = await createSnapshotOverlay('qemu-io-snapshot-', size, filename, baseFormat)
  const device = await openImage(overlay.path, { format: overlay.format, writable: true })
  return { device, flags, cleanup: overlay.cleanup, reopen: async (f) => ({ device: await openImage(overlay.path, { format: overlay.format, writable: !f.readOnly }), flags: f, cleanup: overlay.cleanup }) }
}

/** openfile(): 0, or 1 after reporting why the image could not be opened. */
export async function openFile(session: Session, name: string | undefined, flags: OpenFlags, options: Map<string, string>): Promise<number> {
  if (session.image) {
    session.report("file open already, try 'help close'")
    return 1
  }
  // Without a name, the options may still describe a graph whose file lies deeper (file.image.…).
  const filename = name ?? options.get('file.filename') ?? options.get('filename') ?? options.get('file') ?? ([...options.keys()].some((key) => key.startsWith('file.')) ? '' : undefined)
  try {
    if (filename === undefined) throw new ImageError('INVALID_ARGUMENT', 'A block device must be specified for "file"')
    // bdrv_open_common's check, then file-posix's (raw_open_common).
    if (flags.forceShare && !flags.readOnly) throw new ImageError('INVALID_ARGUMENT', 'force-share=on can only be used with read-only images')
    if (flags.copyOnRead && flags.readOnly) throw new ImageError('READ_ONLY', "Can't use copy-on-read on read-only device")
    if (flags.nativeAio && !flags.cacheDirect) throw new ImageError('INVALID_ARGUMENT', 'aio=native was specified, but it requires cache.direct=on, which was not specified.')
    session.image = await openDevice(session, filename, options.get('driver'), options, flags, name !== undefined)
    return 0
  } catch (e) {
    // qemu-io reports a format's key error itself, without qemu-img's "Could not open 'FILE': "
    // (a file's own errors keep theirs: file-posix words them so).
    const text = errorText(session.ctx, e)
    const prefix = e instanceof ImageError && e.code === 'BAD_KEY' && e.file !== undefined ? `Could not open '${e.file}': ` : undefined
    session.report(`can't open${name === undefined ? '' : ` device ${name}`}: ${prefix !== undefined && text.startsWith(prefix) ? text.slice(prefix.length) : text}`)
    return 1
  }
}

/** Closes the open image (blk_unref): written back, a -s overlay removed. */
export async function closeImage(session: Session): Promise<void> {
  const image = session.image
  if (!image) return
  session.image = undefined
  try {
    await image.device.close()
  } finally {
    await image.cleanup?.()
  }
}

/** qemu_opts_parse of an option string, or undefined after reporting why not. */
function optionString(session: Session, text: string, into: Map<string, string>): boolean {
  try {
    for (const [key, value] of parseOptionString(text)) into.set(key, value)
    return true
  } catch (e) {
    session.report((e as Error).message)
    return false
  }
}

const open: CommandInfo = {
  name: 'open', altname: 'o', argmin: 1, argmax: -1, nofileOk: true,
  args: '[-rsCnkU] [-t cache] [-d discard] [-o options] [path]',
  oneline: 'open the file specified by path',
  help: `
 opens a new file in the requested mode

 Example:
 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached

 Opens a file for subsequent use by all of the other qemu-io commands.
 -r, -- open file read-only
 -s, -- use snapshot file
 -C, -- use copy-on-read
 -n, -- disable host cache, short for -t none
 -U, -- force shared permissions
 -k, -- use kernel AIO implementation (Linux only, prefer use of -i)
 -i, -- use AIO mode (threads, native or io_uring)
 -t, -- use the given cache mode for the image
 -d, -- use the given discard mode for the image
 -o, -- options to be given to the block driver
`,
  run: async (session, words) => {
    const flags = defaultOpenFlags()
    const options = new Map<string, string>()
    const parser = new CommandOptions(session, words, 'snCro:ki:t:d:U')
    for (let o = parser.next(); o; o = parser.next()) {
      const [letter, value] = o
      if (letter === 's') flags.snapshot = true
      else if (letter === 'n') Object.assign(flags, { writethrough: false, cacheDirect: true })
      else if (letter === 'C') flags.copyOnRead = true
      else if (letter === 'r') flags.readOnly = true
      else if (letter === 'U') flags.forceShare = true
      else if (letter === 'k') flags.nativeAio = true
      else if (letter === 't' && !parseCacheMode(value, flags)) return session.report(`Invalid cache option: ${value}`), -EINVAL
      else if (letter === 'd' && !parseDiscardMode(value, flags)) return session.report(`Invalid discard option: ${value}`), -EINVAL
      else if (letter === 'i' && !parseAioMode(value, flags)) return session.report(`Invalid aio option: ${value}`), -EINVAL
      else if (letter === 'o') {
        if (session.imageOpts) return session.out("--image-opts and 'open -o' are mutually exclusive\n"), -EINVAL
        if (!optionString(session, value, options)) return -EINVAL
      } else if (letter === '?') return usage(session, open)
    }
    const operands = [...parser.operands]
    if (session.imageOpts && operands.length === 1) {
      if (!optionString(session, operands.shift()!, options)) return -EINVAL
    }
    if (operands.length > 1) return usage(session, open)
    return (await openFile(session, operands[0], flags, options)) === 0 ? 0 : -EINVAL
  },
}

const close: CommandInfo = {
  name: 'close', altname: 'c', oneline: 'close the current open file',
  run: async (session) => {
    await closeImage(session)
    return 0
  },
}

const reopen: CommandInfo = {
  name: 'reopen', argmin: 0, argmax: -1, args: '[(-r|-w)] [-c cache] [-o options]',
  oneline: 'reopens an image with new options',
  help: `
 Changes the open options of an already opened image

 Example:
 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image

 -r, -- Reopen the image read-only
 -w, -- Reopen the image read-write
 -c, -- Change the cache mode to the given value
 -o, -- Changes block driver options (cf. 'open' command)

`,
  run: async (session, words) => {
    const image = session.image!
    const flags: OpenFlags = { ...image.flags }
    const options = new Map<string, string>()
    let hasReadWrite = false
    let hasCache = false
    const parser = new CommandOptions(session, words, 'c:o:rw')
    for (let o = parser.next(); o; o = parser.next()) {
      const [letter, value] = o
      if (letter === 'c') {
        if (!parseCacheMode(value, flags)) return session.report(`Invalid cache option: ${value}`), -EINVAL
        hasCache = true
      } else if (letter === 'o') {
        if (!optionString(session, value, options)) return -EINVAL
      } else if (letter === 'r' || letter === 'w') {
        if (hasReadWrite) return session.report('Only one -r/-w option may be given'), -EINVAL
        flags.readOnly = letter === 'r'
        hasReadWrite = true
      } else return usage(session, reopen)
    }
    if (parser.operands.length !== 0) return usage(session, reopen)
    const readOnly = options.get('read-only')
    if (readOnly !== undefined) {
      if (hasReadWrite) return session.report("Cannot set both -r/-w and 'read-only'"), -EINVAL
      flags.readOnly = readOnly === 'on' || readOnly === 'true'
    }
    if ((options.has('cache.direct') || options.has('cache.no-flush')) && hasCache) return session.report('Cannot set both -c and the cache options'), -EINVAL
    if (flags.readOnly === image.flags.readOnly) {
      image.flags = flags
      return 0
    }
    try {
      await image.device.close()
      session.image = await image.reopen!(flags)
      return 0
    } catch (e) {
      session.image = undefined
      session.report((e as Error).message)
      return -EINVAL
    }
  },
}

/** The commands of this file. */
export const OPEN_COMMANDS: CommandInfo[] = [open, close, reopen]
