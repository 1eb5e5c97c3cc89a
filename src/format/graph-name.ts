// The file name QEMU shows for a node opened from options (block.c bdrv_refresh_filename): the
// plain name when the node is what opening that name would give anyway, otherwise "json:" and
// the node's full options (driver, strong options, children) in QDict iteration order.
import type { OptionScalar } from './option-map.js'

/** A node's full options: scalars and child nodes, in insertion order. */
export type FullOptions = Map<string, OptionScalar | FullOptions>

/** How a node names itself. */
export interface NodeName {
  full: FullOptions
  /** bs->exact_filename: undefined when only a json: description says what the node is. */
  plain: string | undefined
}

/** qobject/qdict.c tdb_hash, bucket of 512. */
function bucket(key: string): number {
  let value = Math.imul(0x238f13af, new TextEncoder().encode(key).length) >>> 0
  const bytes = new TextEncoder().encode(key)
  for (let i = 0; i < bytes.length; i++) value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0
  return ((Math.imul(1103515243, value) + 12345) >>> 0) % 512
}

/** Keys in QDict iteration order: by bucket, the latest inserted first within one. */
function qdictOrder(keys: string[]): string[] {
  return keys.map((key, index) => ({ key, index, bucket: bucket(key) }))
    .sort((a, b) => a.bucket - b.bucket || b.index - a.index)
    .map((e) => e.key)
}

/** qobject_to_json of a QDict: `{"key": value, …}` with QEMU's spacing. */
export function qemuJson(options: FullOptions): string {
  const parts = qdictOrder([...options.keys()]).map((key) => {
    const value = options.get(key)!
    return `${JSON.stringify(key)}: ${value instanceof Map ? qemuJson(value) : JSON.stringify(value)}`
  })
  return `{${parts.join(', ')}}`
}

/** bs->filename: the plain name, or json: of the full options. */
export function nodeFilename(name: NodeName): string {
  return name.plain ?? `json:${qemuJson(name.full)}`
}
