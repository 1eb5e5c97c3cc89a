// NBD file names and options as QEMU's nbd driver reads them (block/nbd.c nbd_parse_uri,
// nbd_parse_filename, nbd_process_legacy_socket_options): URIs, the legacy nbd:HOST:PORT and
// nbd:unix:PATH forms with :exportname=NAME, and server.* / host / port / path options.
import { ImageError } from '../errors.js'
import { stringValue, type FlatOptions } from '../format/option-map.js'
import { NBD_DEFAULT_PORT } from '../nbd/constants.js'
import type { NbdAddress } from './nbd-storage.js'

const invalid = (message: string) => new ImageError('INVALID_ARGUMENT', message)

/** Whether a file name names an NBD export (nbd:, nbd://, nbd+unix://, nbd+tcp://). */
export function isNbdName(filename: string): boolean {
  return /^nbd(\+unix|\+tcp)?:/.test(filename)
}

/** The options a file name `nbd://…`, `nbd+unix://…`, `nbd+tcp://…` or `nbd:…` stands for. */
export function nbdFilenameOptions(filename: string): FlatOptions {
  const options: FlatOptions = new Map([['driver', 'nbd']])
  if (filename.includes('://')) {
    let url: URL
    try {
      url = new URL(filename)
    } catch {
      throw invalid('No valid URL specified')
    }
    const scheme = url.protocol.slice(0, -1)
    const unix = scheme === 'nbd+unix'
    if (scheme !== 'nbd' && scheme !== 'nbd+tcp' && !unix) throw invalid('No valid URL specified')
    const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''))
    if (exportName) options.set('export', exportName)
    const query = [...url.searchParams]
    if (query.length > 1 || (unix && query.length === 0) || (!unix && query.length > 0)) throw invalid('No valid URL specified')
    if (unix) {
      if (url.host !== '' || query[0]![0] !== 'socket') throw invalid('No valid URL specified')
      options.set('server.type', 'unix')
      options.set('server.path', query[0]![1])
    } else {
      if (url.hostname === '') throw invalid('No valid URL specified')
      options.set('server.type', 'inet')
      options.set('server.host', url.hostname.replace(/^\[(.*)\]$/, '$1'))
      options.set('server.port', url.port === '' ? String(NBD_DEFAULT_PORT) : url.port)
    }
    return options
  }
  let rest = filename
  const en = rest.indexOf(':exportname=')
  if (en >= 0) {
    options.set('export', rest.slice(en + ':exportname='.length))
    rest = rest.slice(0, en)
  }
  if (!rest.startsWith('nbd:')) throw invalid("File name string for NBD must start with 'nbd:'")
  const spec = rest.slice('nbd:'.length)
  if (spec.startsWith('unix:')) {
    options.set('server.type', 'unix')
    options.set('server.path', spec.slice('unix:'.length))
  } else if (spec !== '') {
    const colon = spec.lastIndexOf(':')
    if (colon < 0) throw invalid(`address '${spec}' doesn't contain ':' separating host from port`)
    options.set('server.type', 'inet')
    options.set('server.host', spec.slice(0, colon).replace(/^\[(.*)\]$/, '$1'))
    options.set('server.port', spec.slice(colon + 1))
  }
  return options
}

/** The server address and export that an nbd node's options name. */
export function nbdAddress(options: FlatOptions): NbdAddress {
  const exportName = stringValue(options, 'export') ?? ''
  const path = stringValue(options, 'server.path') ?? stringValue(options, 'path')
  const type = stringValue(options, 'server.type') ?? (path !== undefined ? 'unix' : 'inet')
  if (type === 'unix') {
    if (path === undefined) throw invalid("Parameter 'path' is missing")
    return { type: 'unix', path, exportName }
  }
  if (type !== 'inet') throw invalid(`Parameter 'server.type' does not accept value '${type}'`)
  const host = stringValue(options, 'server.host') ?? stringValue(options, 'host')
  if (host === undefined) throw invalid('NBD server address missing')
  const portText = stringValue(options, 'server.port') ?? stringValue(options, 'port') ?? String(NBD_DEFAULT_PORT)
  const port = Number(portText)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid(`Parameter 'port' expects a port number, not '${portText}'`)
  return { type: 'inet', host, port, exportName }
}
