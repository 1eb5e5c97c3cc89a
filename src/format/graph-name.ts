// The file name QEMU shows for a node opened from options (block.c bdrv_refresh_filename): the
// plain name when the node is what opening that name would give anyway, otherwise "json:" and
// the node's full options (driver, strong options, children), printed as a QDict.
import type { OptionScalar } from './option-map.js'

/** A node's full options: scalars and child nodes, in insertion order (a QDict's insertions). */
export interface FullOptions {
  [key: string]: OptionScalar | FullOptions
}

/** How a node names itself. */
export interface NodeName {
  full: FullOptions
  /** bs->exact_filename: undefined when only a json: description says what the node is. */
  plain: string | undefined
}

/** bs->filename: the plain name, or json: of the full options (`toJson`: qobject_to_json). */
export function nodeFilename(name: NodeName, toJson: (options: FullOptions) => string): string {
  return name.plain ?? `json:${toJson(name.full)}`
}
