// qimg io / qemu-io: qemu-io 7.2's command line (options, the image named or none), then its
// commands from -c, or else from standard input after a "qemu-io> " prompt each; exit code 1
// when a command failed (or the image could not be opened), as qemu-io's command_loop decides.
import { ImageError } from '../../errors.js'
import { getopt, type OptionSpec, type Parsed } from '../getopt.js'
import { parseOptionString } from '../image-opts.js'
import { programName, type Command } from '../context.js'
import { fdLineReader } from './input.js'
import { parseAioMode, closeImage, openFile, parseCacheMode, parseDiscardMode } from './open.js'
import { BufferedOut } from './output.js'
import { defaultOpenFlags, Session } from './session.js'
import { runCommandLine } from './table.js'

const SPECS: OptionSpec[] = [
  { short: 'h', long: 'help', value: false },
  { short: 'V', long: 'version', value: false },
  { short: 'c', long: 'cmd', value: true },
  { short: 'f', long: 'format', value: true },
  { short: 'r', long: 'read-only', value: false },
  { short: 's', long: 'snapshot', value: false },
  { short: 'n', long: 'nocache', value: false },
  { short: 'C', long: 'copy-on-read', value: false },
  { short: 'm', long: 'misalign', value: false },
  { short: 'k', long: 'native-aio', value: false },
  { short: 'i', long: 'aio', value: true },
  { short: 'd', long: 'discard', value: true },
  { short: 't', long: 'cache', value: true },
  { short: 'T', long: 'trace', value: true },
  { long: 'object', value: true },
  { long: 'image-opts', value: false },
  { short: 'U', long: 'force-share', value: false },
]

/** qemu-io's usage(): NAME is how the program was called. */
function usageText(name: string): string {
  return `Usage: ${name} [OPTIONS]... [-c STRING]... [file]
QEMU Disk exerciser

  --object OBJECTDEF   define an object such as 'secret' for
                       passwords and/or encryption keys
  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file
  -n, --nocache        disable host cache, short for -t none
  -C, --copy-on-read   enable copy-on-read
  -m, --misalign       misalign allocations for O_DIRECT
  -k, --native-aio     use kernel AIO implementation
                       (Linux only, prefer use of -i)
  -i, --aio=MODE       use AIO mode (threads, native or io_uring)
  -t, --cache=MODE     use the given cache mode for the image
  -d, --discard=MODE   use the given discard mode for the image
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                       specify tracing options
                       see qemu-img(1) man page for full description
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit
  -V, --version        output version information and exit

See '${name} -c help' for information on available commands.

See <https://qemu.org/contribute/report-a-bug> for how to report bugs.
More information on the QEMU project at <https://qemu.org>.
`
}

/** The values of an option in command-line order. */
function values(parsed: Parsed, key: string): string[] {
  return (parsed.all.get(key) ?? []).filter((v): v is string => typeof v === 'string')
}

/** The option letters and names of the command line, in order, with their values. */
function orderedOptions(args: readonly string[]): Parsed {
  return getopt(args, SPECS.map((s) => ({ ...s, key: s.short ?? s.long! })))
}

export const io: Command = async (args, ctx) => {
  const program = programName(ctx)
  const name = program === 'qimg' ? 'qimg io' : program
  const stdout = new BufferedOut(ctx, process.stdout.isTTY === true)
  let parsed: Parsed
  try {
    parsed = orderedOptions(args)
  } catch (e) {
    ctx.err(`${program}: ${(e as ImageError).message}\n`)
    ctx.out(usageText(name))
    return 1
  }
  const exit = (code: number): number => (stdout.flush(), code)
  if (parsed.options.has('V')) return ctx.out(`${name} version 7.2.22 (qimg 0.1.0)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n`), 0
  if (parsed.options.has('h')) return ctx.out(usageText(name)), 0
  const session = new Session(ctx, stdout, parsed.options.has('image-opts'), values(parsed, 'object'))
  const flags = defaultOpenFlags()
  flags.readOnly = parsed.options.has('r')
  flags.snapshot = parsed.options.has('s')
  flags.copyOnRead = parsed.options.has('C')
  flags.forceShare = parsed.options.has('U')
  if (parsed.options.has('n')) Object.assign(flags, { writethrough: false, cacheDirect: true })
  if (parsed.options.has('k')) flags.nativeAio = true
  for (const [key, parse, what] of [['d', parseDiscardMode, 'discard'], ['i', parseAioMode, 'aio'], ['t', parseCacheMode, 'cache']] as const) {
    for (const value of values(parsed, key)) {
      if (!parse(value, flags)) return session.report(`Invalid ${what} option: ${value}`), 1
    }
  }
  if (parsed.operands.length > 1) return ctx.out(usageText(name)), 1
  const format = values(parsed, 'f').at(-1)
  if (format !== undefined && session.imageOpts) return session.report('--image-opts and -f are mutually exclusive'), 1
  const file = parsed.operands[0]
  if (file !== undefined) {
    let options = new Map<string, string>()
    try {
      if (session.imageOpts) options = parseOptionString(file)
    } catch (e) {
      return session.report((e as Error).message), 1
    }
    if (format !== undefined) options.set('driver', format)
    if ((await openFile(session, session.imageOpts ? undefined : file, flags, options)) !== 0) return exit(1)
  }
  let lastError = 0
  try {
    const commands = values(parsed, 'c')
    if (commands.length > 0) {
      for (const command of commands) {
        if (session.quit) break
        const ret = await runCommandLine(session, command)
        if (ret < 0) lastError = ret
      }
    } else {
      const prompt = `${program === 'qimg' ? 'qimg' : program}> `
      const readLine = ctx.readLine ?? fdLineReader(0)
      while (!session.quit) {
        session.out(prompt)
        await session.settle()
        session.completeRequests()
        session.flushStdout()
        const line = readLine()
        if (line === undefined) break
        const ret = await runCommandLine(session, line)
        if (ret < 0) lastError = ret
      }
    }
  } finally {
    await session.drain() // blk_unref drains the requests still in flight
    session.completeRequests()
    // blk_unref's flush failures are error_report lines on stderr; what stdout still buffers
    // follows at exit, as in qemu-io.
    await closeImage(session).catch((e: unknown) => session.report((e as Error).message))
  }
  return exit(lastError < 0 ? 1 : 0)
}
