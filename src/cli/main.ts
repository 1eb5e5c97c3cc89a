// The qimg command line: qemu-img's subcommands and options; every error is one line on
// stderr ("qimg: …") and a non-zero exit code.
import { isImageError } from '../errors.js'
import { FileStorage } from '../io/file.js'
import { hideSecretData } from './secrets.js'
import { errorText, reportError, type CliContext, type Command } from './context.js'

/** Each command's module is loaded only when it runs: start-up stays short. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  amend: async () => (await import('./commands/amend.js')).amend,
  bench: async () => (await import('./commands/bench.js')).bench,
  bitmap: async () => (await import('./commands/bitmap.js')).bitmap,
  check: async () => (await import('./commands/check.js')).check,
  commit: async () => (await import('./commands/commit.js')).commit,
  dd: async () => (await import('./commands/dd.js')).dd,
  compare: async () => (await import('./commands/compare.js')).compare,
  convert: async () => (await import('./commands/convert.js')).convert,
  create: async () => (await import('./commands/create.js')).create,
  info: async () => (await import('./commands/info.js')).info,
  io: async () => (await import('./io/main.js')).io,
  map: async () => (await import('./commands/map.js')).map,
  measure: async () => (await import('./commands/measure.js')).measure,
  nbd: async () => (await import('./commands/nbd.js')).nbd,
  rebase: async () => (await import('./commands/rebase.js')).rebase,
  resize: async () => (await import('./commands/resize.js')).resize,
  snapshot: async () => (await import('./commands/snapshot.js')).snapshot,
  web: async () => (await import('./commands/web.js')).web,
}

const USAGE = `qimg - virtual disk image tool (qemu-img compatible)
usage: qimg [--version] [--help] COMMAND [command options]

Commands:
  amend [-f FMT] -o OPTIONS [-q] FILENAME
  bench [-w] [-c COUNT] [-d DEPTH] [-o OFFSET] [-s SIZE] [-S STEP] [-f FMT] [-q] FILENAME
  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [--image-opts | -f FMT] FILENAME BITMAP
  create [-f FMT] [-o OPTIONS] [-b BACKING -F BACKING_FMT] [-u] [-q] FILENAME [SIZE]
  info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILENAME
  measure [--output=human|json] [-O FMT] [-o OPTIONS] (--size SIZE | [-f FMT] [-l SNAPSHOT] FILENAME)
  rebase [-f FMT] [-u] -b BACKING [-F BACKING_FMT] [-p] [-q] FILENAME
  resize [-f FMT] [--shrink] [--preallocation=MODE] [-q] FILENAME [+|-]SIZE
  io [-f FMT] [-r] [-t CACHE] [--image-opts] [-c CMD]... [FILENAME]   (qemu-io 7.2; commands from stdin without -c)
  snapshot [-l | -c NAME | -a NAME | -d NAME] [-f FMT] [-q] FILENAME
  map [-f FMT] [--output=human|json] [-s OFFSET] [-l LENGTH] [-U] FILENAME
  nbd [-f FMT] [-r] [-x NAME] [-k SOCKET | -b ADDR -p PORT] [-e N] [-t] [-A] [-B BITMAP] FILENAME   (qemu-nbd 7.2)
  convert [-f FMT] [-O raw] [-l SNAPSHOT] [-S SPARSE] [-p] [-m N] [-U] FILENAME OUTPUT
  check [-f FMT] [-r leaks|all] [--output=human|json] [-q] FILENAME
  commit [-f FMT] [-b BASE] [-d] [-p] [-q] FILENAME
  dd [--image-opts] [-U] [-f FMT] [-O OUTPUT_FMT] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT
  compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] FILENAME1 FILENAME2
  web [--port N] [--bind ADDR] [FILENAME | URL]...   (the inspector page)
`

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function run(argv: readonly string[], ctx: CliContext): Promise<number> {
  const [name, ...args] = argv
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    ctx.out(USAGE)
    return name === undefined ? 1 : 0
  }
  if (name === '-V' || name === '--version') {
    ctx.out('qimg version 0.1.0 (qemu-img 7.2 compatible)\n')
    return 0
  }
  const load = COMMANDS[name]
  if (!load) {
    reportError(ctx, `Command not found: ${name}`)
    return 1
  }
  try {
    const command = await load()
    return await command(args, ctx)
  } catch (e) {
    if (isImageError(e)) {
      reportError(ctx, errorText(ctx, e))
      return 1
    }
    reportError(ctx, `internal error: ${(e as Error).stack ?? String(e)}`)
    return 1
  }
}

/**
 * Entry point for bin/qimg.js. `invokedAs` is the name the program was started by: through a link
 * named `qemu-img` qimg answers as qemu-img (messages start with "qemu-img:"), through one named
 * `qemu-io` as qemu-io (`qimg io`), so scripts and test suites written for QEMU's tools run as is.
 */
export async function main(argv: readonly string[], invokedAs = 'qimg'): Promise<number> {
  // A process of its own: nothing else waits on this event loop (see FileStorage.inlineWriteBytes
  // and inlineReadBytes).
  if (process.env['QIMG_SYNC_WRITE'] === undefined) FileStorage.inlineWriteBytes = Number.POSITIVE_INFINITY
  if (process.env['QIMG_SYNC_READ'] === undefined) FileStorage.inlineReadBytes = 64 * 1024
  // Secret data given on the command line must not stay readable by other users in `ps`.
  const program = invokedAs === 'qemu-img' || invokedAs === 'qemu-io' || invokedAs === 'qemu-nbd' ? invokedAs : 'qimg'
  const shown = hideSecretData(argv)
  if (shown) process.title = [program, ...shown].join(' ')
  const command = program === 'qemu-io' ? ['io', ...argv] : program === 'qemu-nbd' ? ['nbd', ...argv] : argv
  return run(command, {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    program,
  })
}
