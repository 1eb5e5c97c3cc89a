// What a qemu-io command is (cmdinfo_t) and the checks commands share.
import { ImageError } from '../../errors.js'
import type { BlockDevice } from '../../format/device.js'
import { CommandOptions, EINVAL, parsePattern } from './args.js'
import type { Session } from './session.js'

/** A qemu-io command: its names, argument counts, help texts and what it runs. */
export interface CommandInfo {
  name: string
  altname?: string
  /** Words after the name: at least `argmin` (default 0), at most `argmax` (-1: no limit; default 0). */
  argmin?: number
  argmax?: number
  /** Runs even without an open image (CMD_NOFILE_OK), or always (CMD_FLAG_GLOBAL). */
  nofileOk?: boolean
  global?: boolean
  /** Needs write permission on the image (BLK_PERM_WRITE). */
  write?: boolean
  args?: string
  oneline: string
  /** Extended help (`help NAME`) after the one-line form. */
  help?: string
  /** Runs with the words of the command line (the name first); 0 or a negative errno. */
  run: (session: Session, words: string[]) => Promise<number>
}

/** BDRV_REQUEST_MAX_BYTES: INT_MAX rounded down to whole sectors. */
export const BDRV_REQUEST_MAX_BYTES = 2147483136

/** qemuio_command_usage: "NAME ARGS -- ONELINE" on stdout; -EINVAL. */
export function usage(session: Session, command: CommandInfo): number {
  session.out(`${command.name} ${command.args ?? '(null)'} -- ${command.oneline}\n`)
  return -EINVAL
}

/** blk_check_byte_request: a request past the end fails with EIO. */
export function checkRange(device: BlockDevice, offset: number, bytes: number): void {
  if (offset > device.size - bytes) throw new ImageError('OUT_OF_RANGE', 'Input/output error')
}

/** What the options of readv, writev, aio_read and aio_write gave, or the code to stop with. */
export type VectoredOptions = { flags: Set<string>; pattern: number; operands: string[] } | { stop: number }

/**
 * The option loop readv, writev, aio_read and aio_write share: flags, the pattern byte (-P,
 * `pattern` by default), -i (an invalid request, reported and not sent), and usage on '?'.
 */
export function vectoredOptions(session: Session, words: readonly string[], command: CommandInfo, spec: string, verb: 'read' | 'write', pattern: number): VectoredOptions {
  const options = new CommandOptions(session, words, spec)
  const flags = new Set<string>()
  for (let o = options.next(); o; o = options.next()) {
    const [letter, value] = o
    if (letter === 'P') {
      pattern = parsePattern(session, value)
      if (pattern < 0) return { stop: -EINVAL }
    } else if (letter === 'i') {
      session.out(`injecting invalid ${verb} request\n`)
      return { stop: 0 }
    } else if (letter === '?') return { stop: usage(session, command) }
    flags.add(letter)
  }
  return { flags, pattern, operands: options.operands }
}
