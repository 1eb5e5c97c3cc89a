// Checks qemu-img makes on option values while it parses its command line (qemu-img.c), so
// their messages come before any other: -o option lists and -l snapshot parameters.
import { ImageError } from '../errors.js'
import { parseOptionString } from './image-opts.js'

/**
 * is_valid_option_list: an -o value may not be empty, start with a comma, or end in an odd
 * number of commas (",," is an escaped comma).
 */
export function checkOptionList(text: string): void {
  let trailing = 0
  while (trailing < text.length && text[text.length - 1 - trailing] === ',') trailing++
  if (text === '' || text.startsWith(',') || trailing % 2 === 1) throw new ImageError('INVALID_ARGUMENT', `Invalid option list: ${text}`)
}

/** internal_snapshot_opts: the keys an -l "snapshot.…" value may have. */
const SNAPSHOT_KEYS = new Set(['snapshot.id', 'snapshot.name'])

/** qemu-img's -l: "snapshot.id=ID,snapshot.name=NAME" or a bare ID or name. */
export function snapshotParam(text: string): string | { id?: string; name?: string } {
  if (!text.startsWith('snapshot.')) return text
  const opts = parseOptionString(text)
  for (const key of opts.keys()) {
    if (!SNAPSHOT_KEYS.has(key)) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${key}'\nqimg: Failed in parsing snapshot param '${text}'`)
  }
  const id = opts.get('snapshot.id')
  const name = opts.get('snapshot.name')
  return { ...(id === undefined ? {} : { id }), ...(name === undefined ? {} : { name }) }
}

/** The -o spec's check. */
export const optionListCheck = { check: checkOptionList }

/** The -l spec's check. */
export const snapshotParamCheck = { check: (text: string) => { snapshotParam(text) } }
