// What a CLI command gets: its arguments and where to print. Commands return an exit code.
import { ImageError } from '../errors.js'
import type { OpenImageOptions } from '../node/open.js'
import { openImage } from '../node/open.js'
import type { BlockDevice } from '../format/device.js'
import { getopt, stringOption, type OptionSpec, type Parsed } from './getopt.js'
import { describesGraph, openOperandOptions, operandOptions } from './block-options.js'
import { promptedSecret, secretsOf } from './secrets.js'
import { stringValue } from '../format/option-map.js'

/** Output sinks (process streams in the real CLI, buffers in tests). */
export interface CliContext {
  out(text: string): void
  err(text: string): void
  /**
   * The name messages start with: 'qimg', or 'qemu-img' / 'qemu-io' when qimg was invoked through
   * a link of that name, so scripts that match qemu-img's messages keep working.
   */
  program?: string
  /** Lines of standard input, for qemu-io's commands without -c (default: file descriptor 0). */
  readLine?: () => string | undefined
}

/** The name this invocation's messages start with. */
export function programName(ctx: CliContext): string {
  return ctx.program ?? 'qimg'
}

/**
 * The text an error is reported with: its message, or QEMU's own text (ImageError.qemuText) when
 * this runs as qemu-img or qemu-io.
 */
export function errorText(ctx: CliContext, e: unknown): string {
  if (programName(ctx) !== 'qimg' && e instanceof ImageError && e.qemuText !== undefined) return e.qemuText
  return (e as Error).message
}

/**
 * Prints an error as qemu's error_report does: `PROGRAM: message`. A message that stands for
 * several reports holds "\nqimg: " before each further one; hints (other lines) are unprefixed.
 */
export function reportError(ctx: CliContext, message: string): void {
  const program = programName(ctx)
  const text = program === 'qimg' ? message : message.replaceAll('\nqimg: ', `\n${program}: `).replaceAll("'qimg --help'", `'${program} --help'`)
  ctx.err(`${program}: ${text}\n`)
}

/** A subcommand: runs with its own arguments and returns the exit code. */
export type Command = (args: readonly string[], ctx: CliContext) => Promise<number>

/** Options every image-opening command shares. */
export const COMMON_SPECS: OptionSpec[] = [
  { short: 'f', long: 'format', value: true, key: 'format' },
  { short: 'U', long: 'force-share', value: false, key: 'force-share' },
  { long: 'image-opts', value: false },
  { long: 'object', value: true },
  { short: 'h', long: 'help', value: false, key: 'help' },
  { short: 'q', long: 'quiet', value: false, key: 'quiet' },
  // qimg's own: never open a file an image names (backing file, data file): for untrusted images.
  { long: 'untrusted', value: false },
]

/** Parses arguments with the common options added. */
export function parseArgs(args: readonly string[], specs: OptionSpec[]): Parsed {
  return getopt(args, [...COMMON_SPECS, ...specs], 'qemu-img')
}

/** What an image operand names: the file and the format the other options give it. */
export interface OperandImage {
  filename: string
  format: string | undefined
}

/**
 * The file an image operand names and its format: with --image-opts or as json: the option
 * tree's file (file.filename, filename), else the name and the -f option. Commands that work on
 * the file itself (check, amend, rebase) read operands here; everything else opens them with
 * {@link openOperand}, so `--image-opts` means the same to all of them.
 */
export function operandImage(operand: string, parsed: Parsed, formatKey = 'format'): OperandImage {
  const imageOpts = parsed.options.has('image-opts')
  if (imageOpts && parsed.options.has(formatKey)) throw new ImageError('INVALID_ARGUMENT', '--image-opts and --format are mutually exclusive')
  if (!describesGraph(operand, imageOpts)) return { filename: operand, format: stringOption(parsed, formatKey) }
  const options = operandOptions(operand, imageOpts, stringOption(parsed, formatKey))
  const filename = stringValue(options, 'file.filename') ?? stringValue(options, 'filename') ?? stringValue(options, 'file')
  if (filename === undefined) throw new ImageError('INVALID_ARGUMENT', `'${operand}' names no file (file.filename=…)`)
  return { filename: filename.startsWith('file:') ? filename.slice('file:'.length) : filename, format: stringValue(options, 'driver') }
}

/** Opens an operand as qemu-img does: a file name, or an option string with --image-opts. */
export async function openOperand(operand: string, parsed: Parsed, extra: OpenImageOptions = {}, formatKey = 'format'): Promise<BlockDevice> {
  if (parsed.options.has('untrusted')) extra = { ...extra, fileReferences: extra.fileReferences === 'ignore' ? 'ignore-untrusted' : 'deny' }
  // Secrets (--object) are checked up front; the one an encrypted image needs is looked up lazily,
  // or, without encrypt.key-secret, asked for on a terminal.
  const secrets = await secretsOf(parsed)
  if (parsed.options.has('image-opts') && parsed.options.has(formatKey)) throw new ImageError('INVALID_ARGUMENT', '--image-opts and --format are mutually exclusive')
  // json:, --image-opts and protocol prefixes describe a block graph (block-options.ts).
  const imageOpts = parsed.options.has('image-opts')
  if (describesGraph(operand, imageOpts)) return openOperandOptions(operand, imageOpts, stringOption(parsed, formatKey), secrets, extra)
  return openImage(operand, { format: stringOption(parsed, formatKey), secret: promptedSecret(operand), ...extra })
}

/** Checks an --output value. */
export function outputFormat(parsed: Parsed): 'human' | 'json' {
  const value = stringOption(parsed, 'output') ?? 'human'
  if (value !== 'human' && value !== 'json') throw new ImageError('INVALID_ARGUMENT', `--output must be used with human or json as argument.`)
  return value
}

/** The single operand a command takes, or an error naming what is missing. */
export function oneOperand(parsed: Parsed, what = 'filename'): string {
  if (parsed.operands.length < 1) throw new ImageError('INVALID_ARGUMENT', `Expecting one image file name`)
  if (parsed.operands.length > 1) throw new ImageError('INVALID_ARGUMENT', `Expecting one ${what}, got extra argument '${parsed.operands[1]}'`)
  return parsed.operands[0]!
}
