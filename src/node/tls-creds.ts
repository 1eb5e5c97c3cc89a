// TLS credentials as QEMU's --object defines them (crypto/tlscredsx509.c, tlscredspsk.c):
// tls-creds-x509 reads ca-cert.pem, server-cert.pem and server-key.pem from `dir` (the client's
// certificate is checked unless verify-peer=off); tls-creds-psk reads keys.psk, lines of
// `username:hexkey`. What they give is a Node TLS socket over a connection: the server's side
// of an accepted one (qemu-nbd), or the client's (an nbd node's tls-creds, as qemu-img opens it).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { TLSSocket, checkServerIdentity, connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContextOptions } from 'node:tls'
import { isIP } from 'node:net'
import { ImageError } from '../errors.js'
import { errnoText, isErrnoName } from '../io/errno.js'
import { parseOptionString } from '../cli/image-opts.js'

/** One tls-creds-* object. */
export interface TlsCreds {
  id: string
  type: 'tls-creds-x509' | 'tls-creds-psk'
  endpoint: 'server' | 'client'
  dir: string
  verifyPeer: boolean
  /** tls-creds-psk on a client: the identity sent (default 'qemu'). */
  username: string | undefined
}

const invalid = (message: string) => new ImageError('INVALID_ARGUMENT', message)

/** Whether an --object text defines TLS credentials (the rest are secrets). */
export function isTlsObject(text: string): boolean {
  return /^(qom-type=)?tls-creds-(x509|psk)(,|$)/.test(text)
}

/** Parses a tls-creds-x509 / tls-creds-psk object's options. */
export function parseTlsObject(text: string): TlsCreds {
  const opts = parseOptionString(text, 'qom-type')
  const type = opts.get('qom-type')
  if (type !== 'tls-creds-x509' && type !== 'tls-creds-psk') throw invalid(`Object type '${type ?? ''}' is not TLS credentials`)
  const known = new Set(['qom-type', 'id', 'dir', 'endpoint', 'verify-peer', 'priority', 'sanity-check', 'loaded', 'username', 'passwordid'])
  for (const key of opts.keys()) if (!known.has(key)) throw invalid(`Property '${type}.${key}' not found`)
  const id = opts.get('id')
  if (id === undefined) throw invalid("Parameter 'id' is missing")
  const endpoint = opts.get('endpoint') ?? 'client'
  if (endpoint !== 'server' && endpoint !== 'client') throw invalid(`Parameter 'endpoint' does not accept value '${endpoint}'`)
  const verify = opts.get('verify-peer') ?? 'on'
  const truth: Record<string, boolean> = { on: true, yes: true, true: true, off: false, no: false, false: false }
  if (!(verify in truth)) throw invalid(`Parameter 'verify-peer' expects 'on' or 'off'`)
  const dir = opts.get('dir')
  if (dir === undefined) throw invalid('Missing \'dir\' property value')
  return { id, type, endpoint, dir, verifyPeer: truth[verify]!, username: opts.get('username') }
}

/** qcrypto_tls_creds_get_path for a mandatory file: its contents, or QEMU's message. */
async function credentialFile(dir: string, name: string): Promise<Buffer> {
  const path = join(dir, name)
  try {
    return await readFile(path)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new ImageError('IO', `Unable to access credentials ${path}: ${code !== undefined && isErrnoName(code) ? errnoText(code) : (e as Error).message}`, { cause: e })
  }
}

/** keys.psk: `username:hexkey` lines (psktool's format). */
export function parsePskFile(text: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>()
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const hex = line.slice(colon + 1).trim()
    if (/^([0-9a-fA-F]{2})+$/.test(hex)) keys.set(line.slice(0, colon), Buffer.from(hex, 'hex'))
  }
  return keys
}

/** Credentials with their files read, as QEMU loads them when the object is created. */
export interface LoadedTlsCreds {
  creds: TlsCreds
  files: Map<string, Buffer>
}

/** The files each kind of credentials must have (qcrypto_tls_creds_*_load's mandatory paths). */
function mandatoryFiles(creds: TlsCreds): string[] {
  if (creds.type === 'tls-creds-psk') return ['keys.psk']
  return creds.endpoint === 'server' ? ['ca-cert.pem', 'server-cert.pem', 'server-key.pem'] : ['ca-cert.pem']
}

/** A client's certificate and key are optional (the server may not ask for them). */
const OPTIONAL_CLIENT_FILES = ['client-cert.pem', 'client-key.pem']

/** Reads an object's credential files; a missing one is QEMU's "Unable to access credentials". */
export async function loadTlsCreds(creds: TlsCreds): Promise<LoadedTlsCreds> {
  const files = new Map<string, Buffer>()
  for (const name of mandatoryFiles(creds)) files.set(name, await credentialFile(creds.dir, name))
  if (creds.type === 'tls-creds-x509' && creds.endpoint === 'client') {
    for (const name of OPTIONAL_CLIENT_FILES) {
      const bytes = await readFile(join(creds.dir, name)).catch(() => undefined)
      if (bytes) files.set(name, bytes)
    }
  }
  // A client's PSK object looks its username up in keys.psk when it is created (qcrypto_tls_creds_psk_load).
  if (creds.type === 'tls-creds-psk' && creds.endpoint === 'client') pskOf(creds, files)
  return { creds, files }
}

/** The credentials with `id` among --object texts, loaded (qemu-img's "No TLS credentials with id"). */
export async function findTlsCreds(objects: readonly string[], id: string): Promise<LoadedTlsCreds> {
  const creds = objects.filter(isTlsObject).map(parseTlsObject).find((c) => c.id === id)
  if (!creds) throw invalid(`No TLS credentials with id '${id}'`)
  return loadTlsCreds(creds)
}

/** Makes `socket` a TLS server connection; resolves once the handshake is done. */
export type TlsUpgrade = (socket: Socket) => Promise<TLSSocket>

/** The server side of loaded credentials (qemu-nbd wants a server endpoint). */
export function serverTls(loaded: LoadedTlsCreds): TlsUpgrade {
  const { creds, files } = loaded
  if (creds.endpoint !== 'server') throw invalid('Expected TLS credentials for a server endpoint')
  let options: { secureContext: ReturnType<typeof createSecureContext>; requestCert: boolean; rejectUnauthorized: boolean; pskCallback?: (socket: TLSSocket, identity: string) => Buffer | null }
  if (creds.type === 'tls-creds-x509') {
    const context: SecureContextOptions = { ca: files.get('ca-cert.pem')!, cert: files.get('server-cert.pem')!, key: files.get('server-key.pem')! }
    options = { secureContext: createSecureContext(context), requestCert: creds.verifyPeer, rejectUnauthorized: creds.verifyPeer }
  } else {
    const keys = parsePskFile(files.get('keys.psk')!.toString('utf8'))
    // OpenSSL offers PSK to TLS 1.2 clients through its PSK cipher suites.
    options = {
      secureContext: createSecureContext({ ciphers: 'PSK', maxVersion: 'TLSv1.2' }),
      requestCert: false,
      rejectUnauthorized: false,
      pskCallback: (_socket, identity) => keys.get(identity) ?? null,
    }
  }
  return (socket) => new Promise<TLSSocket>((resolve, reject) => {
    const secure = new TLSSocket(socket, { isServer: true, ...options })
    secure.once('secure', () => resolve(secure))
    secure.once('error', (e) => reject(new ImageError('IO', `TLS handshake failed: ${e.message}`, { cause: e })))
  })
}

/** QEMU's words (gnutls's, through qcrypto_tls_session_check_certificate) for a refused certificate. */
function certificateText(e: Error & { code?: string }, hostname: string | undefined): string {
  switch (e.code) {
    case 'ERR_TLS_CERT_ALTNAME_INVALID': return `Certificate does not match the hostname ${hostname ?? ''}`
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY': return "The certificate hasn't got a known issuer"
    case 'CERT_HAS_EXPIRED': return 'The certificate has expired'
    default: return `TLS handshake failed: ${e.message}`
  }
}

/**
 * The client side of loaded credentials, for an nbd node's tls-creds: x509 checks the server's
 * certificate against ca-cert.pem and `hostname` (tls-hostname, or the TCP host), offering
 * client-cert.pem when present; PSK sends `username` (default 'qemu') with its key from keys.psk.
 */
export function clientTls(loaded: LoadedTlsCreds, hostname: string | undefined): TlsUpgrade {
  const { creds } = loaded
  if (creds.endpoint !== 'client') throw invalid('Expected TLS credentials for a client endpoint')
  // The rest is QEMU's TLS session set-up: its errors come once the server has agreed to TLS.
  return async (socket) => {
    const options = clientOptions(loaded, hostname)
    return new Promise<TLSSocket>((resolve, reject) => {
      const secure = tlsConnect({ ...options, socket })
      secure.once('secureConnect', () => resolve(secure))
      secure.once('error', (e) => reject(new ImageError('IO', certificateText(e, hostname), { cause: e })))
    })
  }
}

/** A client's PSK identity (username, default 'qemu') and its key from keys.psk. */
function pskOf(creds: TlsCreds, files: Map<string, Buffer>): { username: string; psk: Buffer } {
  const username = creds.username ?? 'qemu'
  const psk = parsePskFile(files.get('keys.psk')!.toString('utf8')).get(username)
  if (!psk) throw new ImageError('BAD_KEY', `Username ${username} not found in PSK file ${join(creds.dir, 'keys.psk')}`)
  return { username, psk }
}

/** tls.connect's options for client credentials (qcrypto_tls_session_new's checks). */
function clientOptions(loaded: LoadedTlsCreds, hostname: string | undefined): ConnectionOptions {
  const { creds, files } = loaded
  let options: ConnectionOptions
  if (creds.type === 'tls-creds-x509') {
    if (creds.verifyPeer && hostname === undefined) throw invalid('No hostname for certificate validation')
    const cert = files.get('client-cert.pem')
    const key = files.get('client-key.pem')
    options = {
      ca: files.get('ca-cert.pem')!,
      ...(cert && key ? { cert, key } : {}),
      rejectUnauthorized: creds.verifyPeer,
      ...(hostname !== undefined && isIP(hostname) === 0 ? { servername: hostname } : {}),
      checkServerIdentity: (_host, certificate) => checkServerIdentity(hostname ?? '', certificate),
    }
  } else {
    const { username, psk } = pskOf(creds, files)
    options = { ciphers: 'PSK', maxVersion: 'TLSv1.2', pskCallback: () => ({ psk, identity: username }), checkServerIdentity: () => undefined }
  }
  return options
}
