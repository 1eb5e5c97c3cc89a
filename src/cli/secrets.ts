// Secrets the qemu-img way: `--object secret,id=ID,data=…|file=…[,format=raw|base64]` fills a
// registry that image options name (`encrypt.key-secret=ID`); without one, a passphrase is asked
// for when stdin is a terminal. Secret values never appear in messages.
import { readFile } from 'node:fs/promises'
import { ImageError } from '../errors.js'
import type { Parsed } from './getopt.js'
import { parseOptionString } from './image-opts.js'

/** Secrets by ID; the TLS credential objects (tls-creds-*) beside them, as given, for NBD nodes. */
export type SecretRegistry = ReadonlyMap<string, Uint8Array> & { readonly tlsObjects?: readonly string[] }

/** An --object that defines TLS credentials rather than a secret (parsed where an nbd node uses it). */
const TLS_OBJECT = /^(qom-type=)?tls-creds-(x509|psk)(,|$)/

const OBJECT_KEYS = new Set(['qom-type', 'id', 'data', 'file', 'format', 'keyid', 'iv', 'loaded'])

function invalid(message: string): ImageError {
  return new ImageError('INVALID_ARGUMENT', message)
}

/** Decodes base64 strictly (QEMU's qbase64_decode refuses stray characters). */
function fromBase64(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '')
  if (clean.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) throw invalid('Secret data is not valid base64')
  return new Uint8Array(Buffer.from(clean, 'base64'))
}

/** One `--object` value: the secret it defines (id and bytes). */
async function parseSecretObject(text: string): Promise<{ id: string; value: Uint8Array }> {
  let opts: Map<string, string>
  try {
    opts = parseOptionString(text, 'qom-type')
  } catch {
    // The item might be part of a secret: never echo it.
    throw invalid('Invalid --object option string: every item after the type must be key=value (values are not shown)')
  }
  const type = opts.get('qom-type')
  if (type !== 'secret') throw invalid(`Invalid object type '${type ?? ''}': qimg supports --object secret only`)
  for (const key of opts.keys()) if (!OBJECT_KEYS.has(key)) throw invalid(`Parameter '${key}' is unexpected`)
  const id = opts.get('id')
  if (id === undefined) throw invalid("Parameter 'id' is missing")
  if (opts.has('keyid') || opts.has('iv')) throw new ImageError('UNSUPPORTED', `secret '${id}': secrets encrypted with keyid= are not supported`)
  const data = opts.get('data')
  const file = opts.get('file')
  if (data !== undefined && file !== undefined) throw invalid("'file' and 'data' are mutually exclusive")
  if (data === undefined && file === undefined) throw invalid("Either 'file' or 'data' must be provided")
  const format = opts.get('format') ?? 'raw'
  if (format !== 'raw' && format !== 'base64') throw invalid(`Parameter 'format' does not accept value '${format}'`)
  let raw: Uint8Array
  if (file !== undefined) {
    try {
      raw = new Uint8Array(await readFile(file))
    } catch (cause) {
      throw new ImageError('IO', `Unable to read ${file}: ${(cause as Error).message}`, { cause })
    }
  } else {
    raw = new TextEncoder().encode(data)
  }
  return { id, value: format === 'base64' ? fromBase64(new TextDecoder().decode(raw)) : raw }
}

/** Builds the registry from every `--object` value, refusing duplicate IDs as QEMU does. */
export async function loadSecrets(texts: readonly string[]): Promise<SecretRegistry> {
  const tlsObjects = texts.filter((t) => TLS_OBJECT.test(t))
  const registry: Map<string, Uint8Array> & { tlsObjects?: readonly string[] } = new Map<string, Uint8Array>()
  registry.tlsObjects = tlsObjects
  for (const text of texts) {
    if (tlsObjects.includes(text)) continue
    const { id, value } = await parseSecretObject(text)
    if (registry.has(id)) throw invalid(`attempt to add duplicate property '${id}' to object (type 'container')`)
    registry.set(id, value)
  }
  return registry
}

const parsedSecrets = new WeakMap<Parsed, Promise<SecretRegistry>>()

/** The secrets of a parsed command line (`--object`), loaded once. */
export function secretsOf(parsed: Parsed): Promise<SecretRegistry> {
  let secrets = parsedSecrets.get(parsed)
  if (!secrets) {
    const texts = (parsed.all.get('object') ?? []).filter((v): v is string => typeof v === 'string')
    secrets = loadSecrets(texts)
    parsedSecrets.set(parsed, secrets)
  }
  return secrets
}

/** The secret with `id`, or BAD_KEY as QEMU words it. */
export function lookupSecret(registry: SecretRegistry, id: string): Uint8Array {
  const value = registry.get(id)
  if (value === undefined) throw new ImageError('BAD_KEY', `No secret with id '${id}'`)
  return value
}

/**
 * The secret with `id` as a passphrase: QEMU's qcrypto_secret_lookup_as_utf8 also refuses
 * bytes that are not UTF-8 (and, as g_utf8_validate, any NUL byte).
 */
export function lookupSecretUtf8(registry: SecretRegistry, id: string): Uint8Array {
  const value = lookupSecret(registry, id)
  let valid = !value.includes(0)
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(value)
  } catch {
    valid = false
  }
  if (!valid) throw new ImageError('BAD_KEY', `Data from secret ${id} is not valid UTF-8`)
  return value
}

/** Reads a line from the terminal without echo; undefined on end of input. */
function readHidden(prompt: string): Promise<string | undefined> {
  const stdin = process.stdin
  // Echo goes off before the prompt shows: a passphrase typed as soon as the prompt appears
  // must never be echoed.
  stdin.setRawMode(true)
  process.stderr.write(prompt)
  stdin.resume()
  return new Promise((resolve, reject) => {
    let text = ''
    const finish = () => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
    }
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          finish()
          resolve(text)
          return
        }
        if (ch === '\u0003' || ch === '\u0004') {
          finish()
          if (ch === '\u0004' && text === '') resolve(undefined)
          else reject(new ImageError('BAD_KEY', 'passphrase entry interrupted'))
          return
        }
        if (ch === '\u007f' || ch === '\b') text = Array.from(text).slice(0, -1).join('')
        else text += ch
      }
    }
    stdin.on('data', onData)
  })
}

/**
 * The secret source for an image given without `encrypt.key-secret`: a passphrase prompt when
 * stdin is a terminal (asked only if the image turns out to be encrypted), else nothing.
 */
export function promptedSecret(file: string): (() => Promise<Uint8Array | undefined>) | undefined {
  if (!process.stdin.isTTY) return undefined
  return async () => {
    const text = await readHidden(`Disk image '${file}' is encrypted.\nPassphrase: `)
    return text === undefined ? undefined : new TextEncoder().encode(text)
  }
}

/**
 * The command line with the values of `data=` in `--object` options hidden, for the process
 * title (what `ps` and /proc/PID/cmdline show to every user of the machine); undefined when
 * there is nothing to hide. qemu-img leaves them visible. Commas inside a value are doubled, as
 * in every QEMU option string.
 */
export function hideSecretData(argv: readonly string[]): string[] | undefined {
  let hidden = false
  const hide = (spec: string): string => spec.replace(/(^|,)data=(?:[^,]|,,)*/g, (_match, lead: string) => {
    hidden = true
    return `${lead}data=***`
  })
  const out = argv.map((arg, i) => {
    if (argv[i - 1] === '--object') return hide(arg)
    if (arg.startsWith('--object=')) return `--object=${hide(arg.slice('--object='.length))}`
    return arg
  })
  return hidden ? out : undefined
}
