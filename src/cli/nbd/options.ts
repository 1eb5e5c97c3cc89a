// qemu-nbd 7.2's command line (qemu-nbd.c main): the options, their checks in getopt order and
// the messages, into one settings object: a server's, or with -L a listing client's. Kernel
// devices (-c, -d) are refused with a message of their own.
import { ImageError } from '../../errors.js'
import { NBD_MAX_STRING_SIZE } from '../../nbd/constants.js'
import { getopt, type OptionSpec, type Parsed } from '../getopt.js'
import { defaultOpenFlags } from '../io/session.js'
import { parseAioMode, parseCacheMode, parseDiscardMode } from '../io/open.js'
import { snapshotParam } from '../option-checks.js'

/** Everything the server needs from the command line. */
export interface NbdSettings {
  list: false
  parsed: Parsed
  image: string
  format: string | undefined
  readOnly: boolean
  snapshot: boolean
  loadSnapshot: string | { id?: string; name?: string } | undefined
  exportName: string
  description: string | undefined
  /** -B, in QEMU's order (its list is built by prepending). */
  bitmaps: string[]
  allocationDepth: boolean
  socketPath: string | undefined
  bind: string
  port: number
  shared: number
  persistent: boolean
  verbose: boolean
  discard: 'ignore' | 'unmap'
  detectZeroes: 'off' | 'on' | 'unmap'
  writethrough: boolean
  cacheUnsafe: boolean
  tlsCreds: string | undefined
  fork: boolean
  pidFile: string | undefined
}

/** -L: where the server is, and the TLS to talk to it with. */
export interface NbdListSettings {
  list: true
  parsed: Parsed
  socketPath: string | undefined
  bind: string
  port: number
  tlsCreds: string | undefined
  /** The name the server's certificate must carry: --tls-hostname, else the TCP address (-b). */
  tlsHostname: string | undefined
}

const SPECS: OptionSpec[] = [
  { short: 'h', long: 'help', value: false },
  { short: 'V', long: 'version', value: false },
  { short: 'b', long: 'bind', value: true },
  { short: 'p', long: 'port', value: true },
  { short: 'k', long: 'socket', value: true },
  { short: 'o', long: 'offset', value: true },
  { short: 'r', long: 'read-only', value: false },
  { short: 'A', long: 'allocation-depth', value: false },
  { short: 'B', long: 'bitmap', value: true },
  { short: 'c', long: 'connect', value: true },
  { short: 'd', long: 'disconnect', value: false },
  { short: 'L', long: 'list', value: false },
  { short: 's', long: 'snapshot', value: false },
  { short: 'l', long: 'load-snapshot', value: true },
  { short: 'n', long: 'nocache', value: false },
  { long: 'cache', value: true },
  { long: 'aio', value: true },
  { long: 'discard', value: true },
  { long: 'detect-zeroes', value: true },
  { short: 'e', long: 'shared', value: true },
  { short: 'f', long: 'format', value: true, key: 'format' },
  { short: 't', long: 'persistent', value: false },
  { short: 'v', long: 'verbose', value: false },
  { long: 'object', value: true },
  { short: 'x', long: 'export-name', value: true },
  { short: 'D', long: 'description', value: true },
  { long: 'tls-creds', value: true },
  { long: 'tls-hostname', value: true },
  { long: 'tls-authz', value: true },
  { long: 'image-opts', value: false },
  { short: 'T', long: 'trace', value: true },
  { long: 'fork', value: false },
  { long: 'pid-file', value: true },
  { long: 'selinux-label', value: true },
]

const fail = (message: string) => new ImageError('INVALID_ARGUMENT', message)

/** qemu_strtoi with base 0: decimal, 0x hex or 0 octal, the whole text. */
function parseInteger(text: string): number | undefined {
  const t = text.trim()
  let value: number
  if (/^[+-]?0[xX][0-9a-fA-F]+$/.test(t)) value = parseInt(t, 16)
  else if (/^[+-]?0[0-7]*$/.test(t)) value = parseInt(t, 8)
  else if (/^[+-]?[1-9][0-9]*$/.test(t)) value = parseInt(t, 10)
  else return undefined
  return Number.isSafeInteger(value) && Math.abs(value) <= 0x7fff_ffff ? value : undefined
}

/** Parses and checks qemu-nbd's arguments; `program` names the tool in the help hint. */
export function parseNbdArgs(args: readonly string[], program: string): NbdSettings | NbdListSettings | 'help' | 'version' {
  let parsed: Parsed
  try {
    parsed = getopt(args, SPECS)
  } catch (e) {
    throw fail(`${(e as Error).message}\n${program}: Try \`${program} --help' for more information.`)
  }
  const flags = defaultOpenFlags()
  flags.discardUnmap = false
  let cacheSeen = false
  let aioSeen = false
  let discardSeen = false
  let writethrough = false
  let cacheUnsafe = false
  let detectZeroes: NbdSettings['detectZeroes'] = 'off'
  let readOnly = false
  let loadSnapshot: NbdSettings['loadSnapshot']
  let shared = 1
  const bitmaps: string[] = []
  // -l NAME (not -l snapshot.id=…) counts among -L's per-device settings, as in qemu-nbd.
  let snapshotByName = false
  // In command-line order: qemu-nbd checks each option as getopt returns it.
  for (const { key, value } of parsed.order) {
    const text = typeof value === 'string' ? value : ''
    switch (key) {
      case 'help': return 'help'
      case 'version': return 'version'
      case 'nocache':
      case 'cache': {
        if (cacheSeen) throw fail('-n and --cache can only be specified once')
        cacheSeen = true
        const mode = key === 'nocache' ? 'none' : text
        if (!parseCacheMode(mode, flags)) throw fail(`Invalid cache mode \`${mode}'`)
        writethrough = flags.writethrough
        cacheUnsafe = mode === 'unsafe'
        break
      }
      case 'aio':
        if (aioSeen) throw fail('--aio can only be specified once')
        aioSeen = true
        if (!parseAioMode(text, flags)) throw fail(`Invalid aio mode '${text}'`)
        break
      case 'discard':
        if (discardSeen) throw fail('--discard can only be specified once')
        discardSeen = true
        if (!parseDiscardMode(text, flags)) throw fail(`Invalid discard mode \`${text}'`)
        break
      case 'detect-zeroes':
        if (text !== 'off' && text !== 'on' && text !== 'unmap') throw fail(`Failed to parse detect_zeroes mode: Parameter 'detect-zeroes' does not accept value '${text}'`)
        detectZeroes = text
        if (detectZeroes === 'unmap' && !flags.discardUnmap) throw fail('setting detect-zeroes to unmap is not allowed without setting discard operation to unmap')
        break
      case 'offset':
        throw fail('-o/--offset is not supported by qimg nbd')
      case 'load-snapshot':
        try {
          loadSnapshot = snapshotParam(text)
        } catch {
          throw fail(`Failed in parsing snapshot param \`${text}'`)
        }
        snapshotByName = !text.startsWith('snapshot.')
        readOnly = true
        break
      case 'read-only':
        readOnly = true
        break
      case 'bitmap':
        bitmaps.unshift(text)
        break
      case 'socket':
        if (!text.startsWith('/')) throw fail('socket path must be absolute')
        break
      case 'shared': {
        const n = parseInteger(text)
        if (n === undefined || n < 0) throw fail(`Invalid shared device number '${text}'`)
        shared = n
        break
      }
      case 'export-name':
        if (new TextEncoder().encode(text).length > NBD_MAX_STRING_SIZE) throw fail(`export name '${text}' too long`)
        break
      case 'description':
        if (new TextEncoder().encode(text).length > NBD_MAX_STRING_SIZE) throw fail(`export description '${text}' too long`)
        break
    }
  }
  const str = (key: string) => {
    const v = parsed.options.get(key)
    return typeof v === 'string' ? v : undefined
  }
  const list = parsed.options.has('list')
  const has = (key: string) => parsed.options.has(key)
  if (list) {
    if (parsed.operands.length !== 0) throw fail('List mode is incompatible with a file name')
    const perDevice = ['export-name', 'description', 'connect', 'disconnect', 'format', 'bitmap', 'allocation-depth', 'aio', 'discard', 'cache', 'nocache']
    if (perDevice.some(has) || snapshotByName) throw fail('List mode is incompatible with per-device settings')
    if (has('fork')) throw fail('List mode is incompatible with forking')
  } else if (parsed.operands.length !== 1) {
    throw fail(`Invalid number of arguments\nTry \`${program} --help' for more information.`)
  }
  const tlsCreds = str('tls-creds')
  if (tlsCreds !== undefined) {
    if (has('connect')) throw fail('TLS is not supported with a host device')
    if (has('tls-authz') && list) throw fail('TLS authorization is incompatible with export list')
    if (has('tls-hostname') && !list) throw fail('TLS hostname is only supported with export list')
  } else {
    if (has('tls-authz')) throw fail('--tls-authz is not permitted without --tls-creds')
    if (has('tls-hostname')) throw fail('--tls-hostname is not permitted without --tls-creds')
  }
  if (has('selinux-label')) throw fail('SELinux support not enabled in this binary')
  const portText = str('port')
  let port = 10809
  if (portText !== undefined) {
    const n = parseInteger(portText)
    if (n === undefined || n < 0 || n > 65535) throw fail(`Invalid port '${portText}'`)
    port = n
  }
  const bind = str('bind') ?? '0.0.0.0'
  if (list) return { list, parsed, socketPath: str('socket'), bind, port, tlsCreds, tlsHostname: str('tls-hostname') ?? (str('socket') === undefined ? bind : undefined) }
  if (has('connect') || has('disconnect')) throw fail('Kernel /dev/nbdN support not available')
  if (has('image-opts') && has('format')) throw fail('--image-opts and -f are mutually exclusive')
  return {
    list,
    parsed,
    image: parsed.operands[0]!,
    format: str('format'),
    readOnly,
    snapshot: parsed.options.has('snapshot'),
    loadSnapshot,
    exportName: str('export-name') ?? '',
    description: str('description'),
    bitmaps,
    allocationDepth: parsed.options.has('allocation-depth'),
    socketPath: str('socket'),
    bind,
    port,
    shared,
    persistent: parsed.options.has('persistent'),
    verbose: parsed.options.has('verbose'),
    discard: flags.discardUnmap ? 'unmap' : 'ignore',
    detectZeroes,
    writethrough,
    cacheUnsafe,
    tlsCreds,
    fork: parsed.options.has('fork'),
    pidFile: str('pid-file'),
  }
}

export const NBD_USAGE = (name: string) => `Usage: ${name} [OPTIONS] FILE
  or:  ${name} -L [OPTIONS]
QEMU Disk Network Block Device Utility (qimg, qemu-nbd 7.2 compatible)

  -h, --help                display this help and exit
  -V, --version             output version information and exit

Connection properties:
  -p, --port=PORT           port to listen on (default \`10809')
  -b, --bind=IFACE          interface to bind to (default \`0.0.0.0')
  -k, --socket=PATH         path to the unix socket
  -e, --shared=NUM          device can be shared by NUM clients (default '1')
  -t, --persistent          don't exit on the last connection
  -v, --verbose             display extra debugging information
  -x, --export-name=NAME    expose export by name (default is empty string)
  -D, --description=TEXT    export a human-readable description

Exposing part of the image:
  -A, --allocation-depth    expose the allocation depth
  -B, --bitmap=NAME         expose a persistent dirty bitmap

General purpose options:
  -L, --list                list exports available from another NBD server
  --object type,id=ID,...   define an object such as 'secret' for providing
                            passwords and/or encryption keys, or TLS
                            credentials (tls-creds-x509, tls-creds-psk)
  --tls-creds=ID            use id of an earlier --object to provide TLS
  --fork                    fork off the server process and exit the parent
                            once the server is running
  --pid-file=PATH           store the server's process ID in the given file

Block device options:
  -f, --format=FORMAT       set image format (raw, qcow2, ...)
  -r, --read-only           export read-only
  -s, --snapshot            use FILE as an external snapshot, create a temporary
                            file with backing_file=FILE, redirect the write to
                            the temporary one
  -l, --load-snapshot=SNAPSHOT_PARAM
                            load an internal snapshot inside FILE and export it
                            as an read-only device, SNAPSHOT_PARAM format is
                            'snapshot.id=[ID],snapshot.name=[NAME]', or
                            '[ID_OR_NAME]'
  -n, --nocache             disable host cache
      --cache=MODE          set cache mode used to access the disk image, the
                            valid options are: 'none', 'writeback' (default),
                            'writethrough', 'directsync' and 'unsafe'
      --aio=MODE            set AIO mode (native, io_uring or threads)
      --discard=MODE        set discard mode (ignore, unmap)
      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)
      --image-opts          treat FILE as a full set of image options
`
