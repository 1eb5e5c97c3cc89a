// qemu-io's command table and qemuio_command(): a line split at spaces, the command looked up by
// name or alias, its argument count and the open image checked, then run; help and quit.
import { EINVAL } from './args.js'
import type { CommandInfo } from './command.js'
import { MISC_COMMANDS } from './misc.js'
import { OPEN_COMMANDS } from './open.js'
import { READ_COMMANDS } from './read.js'
import type { Session } from './session.js'
import { errnoOf, strerror } from './report.js'
import { BlkdebugStorage } from '../../io/blkdebug.js'
import { WRITE_COMMANDS } from './write.js'

const quit: CommandInfo = {
  name: 'quit', altname: 'q', argmin: -1, argmax: -1, global: true, oneline: 'exit the program',
  run: async (session) => {
    session.quit = true
    return 0
  },
}

/** help_oneline: "NAME [ARGS ]-- ONELINE". */
function oneline(name: string, command: CommandInfo): string {
  return `${name} ${command.args === undefined ? '' : `${command.args} `}-- ${command.oneline}\n`
}

const help: CommandInfo = {
  name: 'help', altname: '?', argmin: 0, argmax: 1, global: true, args: '[command]',
  oneline: 'help for one or all commands',
  run: async (session, words) => {
    if (words.length < 2) {
      for (const command of COMMANDS) session.out(oneline(command.name, command))
      session.out("\nUse 'help commandname' for extended help.\n")
      return 0
    }
    const command = findCommand(words[1]!)
    if (!command) {
      session.out(`command ${words[1]} not found\n`)
      return -EINVAL
    }
    session.out(oneline(words[1]!, command) + (command.help ?? ''))
    return 0
  },
}

/**
 * The blkdebug node under the open image (bdrv_debug_breakpoint looks down the primary
 * children); undefined (ENOTSUP) when there is none. Its messages go to qemu-io's stdout.
 */
function blkdebugOf(session: Session): BlkdebugStorage | undefined {
  const storage = session.device.driver.storage
  if (!(storage instanceof BlkdebugStorage)) return undefined
  storage.print = (text) => session.out(text)
  return storage
}

/** A breakpoint command: `act` answers whether it found what it works on (else ENOENT). */
function debugCommand(name: string, argCount: number, args: string, line: string, failure: (words: string[]) => string, act: (blkdebug: BlkdebugStorage, words: string[]) => boolean): CommandInfo {
  return {
    name, argmin: argCount, argmax: argCount, args, oneline: line,
    run: async (session, words) => {
      const blkdebug = blkdebugOf(session)
      let code = blkdebug ? 'ENOENT' : 'ENOTSUP'
      try {
        if (blkdebug && act(blkdebug, words)) return 0
      } catch (e) {
        code = errnoOf(e)
      }
      session.out(`${failure(words)}: ${strerror({ code })}\n`)
      return code === 'ENOTSUP' ? -95 : -2
    },
  }
}

/** wait_break: the main loop runs (requests progress) until a request is suspended as TAG. */
const waitBreak: CommandInfo = {
  name: 'wait_break', argmin: 1, argmax: 1, args: 'tag', oneline: 'waits for the suspension of a request',
  run: async (session, words) => {
    await blkdebugOf(session)?.waitForSuspension(words[1]!)
    return 0
  },
}

/** Every command, sorted by name as qemu-io keeps them (help lists them in this order). */
const COMMANDS: CommandInfo[] = [
  quit, help, ...OPEN_COMMANDS, ...READ_COMMANDS, ...WRITE_COMMANDS, ...MISC_COMMANDS,
  debugCommand('break', 2, 'event tag', 'sets a breakpoint on event and tags the stopped request as tag', () => 'Could not set breakpoint', (b, w) => (b.addBreakpoint(w[1]!, w[2]!), true)),
  debugCommand('remove_break', 1, 'tag', 'remove a breakpoint by tag', (w) => `Could not remove breakpoint ${w[1]}`, (b, w) => b.removeBreakpoint(w[1]!)),
  debugCommand('resume', 1, 'tag', 'resumes the request tagged as tag', () => 'Could not resume request', (b, w) => b.resume(w[1]!)),
  waitBreak,
].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))

function findCommand(name: string): CommandInfo | undefined {
  return COMMANDS.find((c) => c.name === name || c.altname === name)
}

/** The bad-argument-count message of command(). */
function argumentCountError(name: string, given: number, min: number, max: number): string {
  if (max === -1) return `bad argument count ${given} to ${name}, expected at least ${min} arguments\n`
  if (min === max) return `bad argument count ${given} to ${name}, expected ${min} arguments\n`
  return `bad argument count ${given} to ${name}, expected between ${min} and ${max} arguments\n`
}

/** qemuio_command: runs one command line; 0 or a negative errno (the exit code depends on it). */
export async function runCommandLine(session: Session, line: string): Promise<number> {
  session.completeRequests()
  const words = line.split(' ').filter((w) => w !== '')
  if (words.length === 0) return 0
  const command = findCommand(words[0]!)
  if (!command) {
    session.err(`command "${words[0]}" not found\n`)
    return -EINVAL
  }
  if (!command.global && !command.nofileOk && !session.image) {
    session.err("no file open, try 'help open'\n")
    return -EINVAL
  }
  const min = command.argmin ?? 0
  const max = command.argmax ?? 0
  const given = words.length - 1
  if (given < min || (max !== -1 && given > max)) {
    session.err(argumentCountError(words[0]!, given, min, max))
    return -EINVAL
  }
  if (command.write && session.image?.flags.readOnly) {
    session.report('Block node is read-only')
    return -1
  }
  try {
    return await command.run(session, words)
  } catch (e) {
    session.out(`${command.name} failed: ${strerror(e)}\n`)
    return -5
  }
}
