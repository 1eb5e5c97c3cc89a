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
