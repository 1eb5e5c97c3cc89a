// QEMU option strings ("driver=qcow2,file.filename=a.qcow2"): ",," is a literal comma.
import { ImageError } from '../errors.js'

/** Splits an option string into key/value pairs; a bare word becomes `implied`'s value. */
export function parseOptionString(text: string, implied?: string): Map<string, string> {
  const result = new Map<string, string>()
  let i = 0
  while (i < text.length) {
    let item = ''
    while (i < text.length) {
      if (text[i] === ',') {
        if (text[i + 1] === ',') {
          item += ','
          i += 2
          continue
        }
        break
      }
      item += text[i++]
    }
    i++
    if (item === '') continue
    const eq = item.indexOf('=')
    if (eq < 0) {
      if (implied === undefined || result.size > 0) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${item}'`)
      result.set(implied, item)
    } else {
      result.set(item.slice(0, eq), item.slice(eq + 1))
    }
  }
  return result
}

/** What --image-opts gives: the file, the driver, and a snapshot to read. */
export interface ImageOptions {
  filename: string
  format: string | undefined
  snapshot: { id?: string; name?: string } | undefined
  /** encrypt.key-secret: the ID of the --object secret holding the passphrase. */
  keySecret: string | undefined
}

/** Reads the image options qimg understands from an --image-opts string. */
export function parseImageOpts(text: string): ImageOptions {
  const opts = parseOptionString(text)
  const filename = opts.get('file.filename') ?? opts.get('filename') ?? opts.get('file')
  if (filename === undefined) throw new ImageError('INVALID_ARGUMENT', `--image-opts '${text}' names no file (file.filename=…)`)
  const id = opts.get('snapshot.id')
  const name = opts.get('snapshot.name')
  return {
    filename,
    format: opts.get('driver'),
    snapshot: id === undefined && name === undefined ? undefined : { ...(id === undefined ? {} : { id }), ...(name === undefined ? {} : { name }) },
    keySecret: opts.get('encrypt.key-secret'),
  }
}
