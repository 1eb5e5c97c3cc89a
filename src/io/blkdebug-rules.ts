// blkdebug's rules (QEMU block/blkdebug.c, docs/devel/blkdebug.txt): [inject-error] and
// [set-state] sections from an ini-style config file (util/qemu-config.c qemu_config_parse) and
// from options (inject-error.0.event=…, qemu_config_parse_qdict), with QEMU's messages.
import { ImageError } from '../errors.js'
import { numberValue, boolValue, stringValue, subOptions, type FlatOptions } from '../format/option-map.js'

/** QEMU's BlkdebugEvent names (qapi/block-core.json), in their order. */
export const BLKDEBUG_EVENTS = [
  'l1_update', 'l1_grow_alloc_table', 'l1_grow_write_table', 'l1_grow_activate_table', 'l2_load', 'l2_update',
  'l2_update_compressed', 'l2_alloc_cow_read', 'l2_alloc_write', 'read_aio', 'read_backing_aio', 'read_compressed',
  'write_aio', 'write_compressed', 'vmstate_load', 'vmstate_save', 'cow_read', 'cow_write', 'reftable_load',
  'reftable_grow', 'reftable_update', 'refblock_load', 'refblock_update', 'refblock_update_part', 'refblock_alloc',
  'refblock_alloc_hookup', 'refblock_alloc_write', 'refblock_alloc_write_blocks', 'refblock_alloc_write_table',
  'refblock_alloc_switch_table', 'cluster_alloc', 'cluster_alloc_bytes', 'cluster_free', 'flush_to_os',
  'flush_to_disk', 'pwritev_rmw_head', 'pwritev_rmw_after_head', 'pwritev_rmw_tail', 'pwritev_rmw_after_tail',
  'pwritev', 'pwritev_zero', 'pwritev_done', 'empty_image_prepare', 'l1_shrink_write_table',
  'l1_shrink_free_l2_clusters', 'cor_write', 'cluster_alloc_space', 'none',
] as const

/** A point in a format driver's work that blkdebug rules can trigger on. */
export type BlkdebugEvent = typeof BLKDEBUG_EVENTS[number]

/** The kinds of request an injected error can hit (BlkdebugIOType). */
export const BLKDEBUG_IO_TYPES = ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status'] as const
export type BlkdebugIoType = typeof BLKDEBUG_IO_TYPES[number]

/** inject-error: once `event` fires (in `state`, 0 = any), requests of `ioTypes` fail with `errno`. */
export interface InjectErrorRule {
  action: 'inject-error'
  event: BlkdebugEvent
  state: number
  errno: number
  once: boolean
  immediately: boolean
  /** Byte offset the request must cover, or -1 for any (QEMU's `sector` × 512). */
  offset: number
  ioTypes: ReadonlySet<BlkdebugIoType>
}

/** set-state: when `event` fires in `state` (0 = any), the state becomes `newState`. */
export interface SetStateRule {
  action: 'set-state'
  event: BlkdebugEvent
  state: number
  newState: number
}

/** A breakpoint (qemu-io's break): the request raising `event` is suspended as `tag` until resumed. */
export interface SuspendRule {
  action: 'suspend'
  event: BlkdebugEvent
  state: number
  tag: string
}

export type BlkdebugRule = InjectErrorRule | SetStateRule | SuspendRule

const SECTION_KEYS = {
  'inject-error': ['event', 'state', 'iotype', 'errno', 'sector', 'once', 'immediately'],
  'set-state': ['event', 'state', 'new_state'],
} as const
type Section = keyof typeof SECTION_KEYS

/** Sections read from a config file: the group name and its key/value pairs, in file order. */
export interface ConfigSection {
  group: string
  options: FlatOptions
}

/** qemu_config_parse: `[group]` lines, `key = "value"` lines, `#` comments, blank lines. */
export function parseBlkdebugConfig(text: string, file: string): ConfigSection[] {
  const sections: ConfigSection[] = []
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  lines.forEach((line, index) => {
    if (line === '' || line.startsWith('#')) return
    const group = /^\[([^\]\s]+)(?:\s+"[^"]*")?\]/.exec(line) ?? /^\[([^\]]+)\]/.exec(line)
    if (group) {
      sections.push({ group: group[1]!, options: new Map() })
      return
    }
    const pair = /^\s*(\S+)\s*=\s*"([^"]*)"/.exec(line)
    if (!pair) throw new ImageError('INVALID_ARGUMENT', `${file}:${index + 1}: parse error`)
    const current = sections[sections.length - 1]
    if (!current) throw new ImageError('INVALID_ARGUMENT', `${file}:${index + 1}: no group defined`)
    current.options.set(pair[1]!, pair[2]!)
  })
  return sections
}

/** The sections of options `inject-error.N.key` / `inject-error.key` (qemu_config_parse_qdict). */
export function sectionsFromOptions(options: FlatOptions): ConfigSection[] {
  const sections: ConfigSection[] = []
  for (const group of Object.keys(SECTION_KEYS) as Section[]) {
    const sub = subOptions(options, group)
    if (sub.size === 0) continue
    const known = SECTION_KEYS[group] as readonly string[]
    const plain = [...sub.keys()].filter((k) => !/^\d+\./.test(k))
    if (plain.length === sub.size) {
      sections.push({ group, options: sub })
      continue
    }
    if (plain.length > 0) throw new ImageError('INVALID_ARGUMENT', `Unknown option '${plain[0]}' for [${group}]`)
    for (let i = 0; ; i++) {
      const section = subOptions(sub, String(i))
      if (section.size === 0) break
      for (const key of section.keys()) if (!known.includes(key)) throw new ImageError('INVALID_ARGUMENT', `[${group}] section doesn't support the option '${key}'`)
      sections.push({ group, options: section })
      for (const key of section.keys()) sub.delete(`${i}.${key}`)
    }
    const left = sub.keys().next()
    if (!left.done) throw new ImageError('INVALID_ARGUMENT', `Unused option '${left.value}' for [${group}]`)
  }
  return sections
}

function enumValue<T extends string>(values: readonly T[], value: string): T {
  if (!(values as readonly string[]).includes(value)) throw new ImageError('INVALID_ARGUMENT', `invalid parameter value: ${value}`)
  return value as T
}

/** blkdebug.c add_rule: one section as a rule; sections of other groups are refused as QEMU does. */
export function ruleOf(section: ConfigSection): BlkdebugRule {
  const { group, options } = section
  if (group !== 'inject-error' && group !== 'set-state') throw new ImageError('INVALID_ARGUMENT', `There is no option group '${group}'`)
  for (const key of options.keys()) if (!(SECTION_KEYS[group] as readonly string[]).includes(key)) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${key}'`)
  // Values are typed as the section is read (qemu_opts_absorb_qdict), before the rule is built.
  const state = numberValue(options, 'state') ?? 0
  const newState = numberValue(options, 'new_state') ?? 0
  const errno = numberValue(options, 'errno') ?? 5 // EIO
  const sector = numberValue(options, 'sector') ?? -1
  const once = boolValue(options, 'once') ?? false
  const immediately = boolValue(options, 'immediately') ?? false
  const eventName = stringValue(options, 'event')
  if (eventName === undefined) throw new ImageError('INVALID_ARGUMENT', 'Missing event name for rule')
  const event = enumValue(BLKDEBUG_EVENTS, eventName)
  if (group === 'set-state') return { action: 'set-state', event, state, newState }
  const iotype = stringValue(options, 'iotype')
  return {
    action: 'inject-error', event, state, errno, once, immediately,
    offset: sector === -1 ? -1 : sector * 512,
    ioTypes: new Set(iotype === undefined ? ['read', 'write', 'write-zeroes', 'discard', 'flush'] : [enumValue(BLKDEBUG_IO_TYPES, iotype)]),
  }
}

/** All rules: the config file's, then the options', inject-error before set-state (read_config). */
export function blkdebugRules(fileSections: ConfigSection[], options: FlatOptions): BlkdebugRule[] {
  const sections = [...fileSections, ...sectionsFromOptions(options)]
  const rules = sections.map(ruleOf)
  return [...rules.filter((r) => r.action === 'inject-error'), ...rules.filter((r) => r.action === 'set-state')]
}
