// Block-graph options as the user gives them on the command line: `json:{…}` file names (block.c
// parse_json_filename: JSON, then qdict_flatten) and --image-opts strings (QemuOpts, dotted keys).
import { ImageError } from '../errors.js'
import { flattenOptions, type FlatOptions } from '../format/option-map.js'
import type { BlockDevice } from '../format/device.js'
import type { OpenImageOptions } from '../node/open.js'
import { openGraph, protocolPrefix } from '../node/open-options.js'
import { parseOptionString } from './image-opts.js'
import { parseQemuJson } from './qemu-json.js'
import { lookupSecret, promptedSecret, type SecretRegistry } from './secrets.js'

/** Reads the JSON text after "json:" as QEMU does, with its messages. */
export function parseJsonOptions(filename: string): FlatOptions {
  const text = filename.slice('json:'.length)
  let value: unknown
  try {
    value = parseQemuJson(text)
  } catch (e) {
    if (e instanceof ImageError) throw new ImageError(e.code, `Could not parse the JSON options: ${e.message}`)
    throw e
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ImageError('INVALID_ARGUMENT', 'Invalid JSON object given')
  return flattenOptions(value)
}

/** An --image-opts string as a flat map (every value a string). */
export function parseDottedOptions(text: string): FlatOptions {
  return new Map(parseOptionString(text))
}

/** True when an operand describes a block graph rather than naming a plain file. */
export function describesGraph(operand: string, imageOpts: boolean): boolean {
  return imageOpts || operand.startsWith('json:') || protocolPrefix(operand) !== undefined
}

/** A block graph as bdrv_open takes it: options, and a name given as such (not as an option). */
export interface OperandGraph {
  options: FlatOptions
  filename?: string | undefined
}

/**
 * The graph an operand stands for: an --image-opts string, a json: name (options only), or a
 * name, perhaps with a protocol prefix (file:, blkdebug:). `format` (-f) wins over a json:
 * driver, as qemu-img's qdict_join keeps the first.
 */
export function operandGraph(operand: string, imageOpts: boolean, format: string | undefined): OperandGraph {
  const graph: OperandGraph = imageOpts ? { options: parseDottedOptions(operand) } : operand.startsWith('json:') ? { options: parseJsonOptions(operand) } : { options: new Map(), filename: operand }
  if (format !== undefined) graph.options.set('driver', format)
  return graph
}

/** The options an operand stands for, its name (if it is one) as `filename`. */
export function operandOptions(operand: string, imageOpts: boolean, format: string | undefined): FlatOptions {
  const { options, filename } = operandGraph(operand, imageOpts, format)
  if (filename !== undefined) options.set('filename', filename)
  return options
}

/** Opens an operand's block graph; errors read as qemu-img's: "Could not open 'OPERAND': …". */
export async function openOperandOptions(operand: string, imageOpts: boolean, format: string | undefined, secrets: SecretRegistry, extra: OpenImageOptions, graph?: OperandGraph): Promise<BlockDevice> {
  try {
    const { options, filename } = graph ?? operandGraph(operand, imageOpts, format)
    return await openGraph(options, {
      ...extra,
      keySecret: (id, file) => id === undefined ? extra.secret ?? promptedSecret(file) : async () => lookupSecret(secrets, id),
      tlsObjects: secrets.tlsObjects ?? [],
    }, filename)
  } catch (e) {
    throw openFailure(operand, e)
  }
}

/** An error opening `operand` as qemu-img reports it: "Could not open 'OPERAND': …". */
export function openFailure(operand: string, e: unknown): unknown {
  if (!(e instanceof ImageError) || e.message.startsWith(`Could not open '${operand}'`)) return e
  // A permission refused after the graph opened (bdrv_check_perm) is not an open failure.
  if (e.code === 'READ_ONLY' && e.message === 'Block node is read-only') return e
  // A text already naming the image file (as a plain open names it) names the operand instead.
  const qemuText = e.qemuText !== undefined && e.file !== undefined && e.qemuText.startsWith(`Could not open '${e.file}': `)
    ? e.qemuText.slice(`Could not open '${e.file}': `.length) : e.qemuText
  return new ImageError(e.code, `Could not open '${operand}': ${e.message}`, {
    cause: e, ...(e.file === undefined ? {} : { file: e.file }), ...(qemuText === undefined ? {} : { qemuText: `Could not open '${operand}': ${qemuText}` }),
  })
}
