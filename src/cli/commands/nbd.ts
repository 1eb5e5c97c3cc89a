// qimg nbd [options] IMG: qemu-nbd 7.2. Opens the image once, serves it to every client over a
// unix socket (-k) or TCP (-b, -p) until the last client leaves (or for ever with -t), and on
// SIGTERM/SIGINT stops accepting, lets the requests in flight finish, flushes and closes.
import { spawn } from 'node:child_process'
import { rm, writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { ImageError, isImageError } from '../../errors.js'
import type { BlockDevice } from '../../format/device.js'
import { NbdExport } from '../../nbd/export.js'
import { createSnapshotOverlay } from '../../node/create.js'
import { NbdServer } from '../../node/nbd-server.js'
import { openImage } from '../../node/open.js'
import { clientTls, isTlsObject, loadTlsCreds, parseTlsObject, serverTls, type LoadedTlsCreds } from '../../node/tls-creds.js'
import { errorText, openOperand, programName, reportError, type CliContext, type Command } from '../context.js'
import { listCommand } from '../nbd/list.js'
import { NBD_USAGE, parseNbdArgs, type NbdSettings } from '../nbd/options.js'

/** Set in the server process that --fork starts: it tells the parent when it serves. */
const FORKED_ENV = 'QIMG_NBD_FORKED'

/** Opens the image as qemu-nbd's blk_new_open does; -s puts a temporary overlay on top. */
async function openExportDevice(s: NbdSettings): Promise<{ device: BlockDevice; cleanup?: () => Promise<void> }> {
  const writable = !s.readOnly
  const extra = { writable: writable && !s.snapshot, cache: s.cacheUnsafe ? 'unsafe' as const : 'writeback' as const, snapshot: s.loadSnapshot }
  const device = await openOperand(s.image, s.parsed, extra)
  if (!s.snapshot) return { device }
  // BDRV_O_SNAPSHOT: writes go to a temporary overlay whose backing file is the image.
  const size = device.size
  const format = (await device.info()).format
  await device.close()
  const overlay = await createSnapshotOverlay('qimg-nbd-snapshot-', size, s.image, format)
  try {
    return { device: await openImage(overlay.path, { format: overlay.format, writable, cache: s.cacheUnsafe ? 'unsafe' : 'writeback' }), cleanup: overlay.cleanup }
  } catch (e) {
    await overlay.cleanup()
    throw e
  }
}

/** --fork: runs the server in a child and returns once it serves (0) or has failed (1). */
async function forkServer(args: readonly string[], ctx: CliContext): Promise<number> {
  const script = process.argv[1]!
  const child = spawn(process.execPath, [...process.execArgv, script, ...(programName(ctx) === 'qemu-nbd' ? [] : ['nbd']), ...args.filter((a) => a !== '--fork')], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, [FORKED_ENV]: '1' },
    argv0: programName(ctx),
  })
  let errors = ''
  child.stderr!.on('data', (d: Buffer) => { errors += d.toString() })
  const outcome = await new Promise<'ready' | 'exit'>((done) => {
    child.once('message', () => done('ready'))
    child.once('exit', () => done('exit'))
  })
  if (errors) ctx.err(errors)
  if (outcome === 'ready') {
    child.stderr!.destroy()
    child.disconnect()
    child.unref()
    return errors ? 1 : 0
  }
  return 1
}

export const nbd: Command = async (args, ctx) => {
  const program = programName(ctx)
  const parsed = parseNbdArgs(args, program)
  if (parsed === 'help') {
    ctx.out(NBD_USAGE(program))
    return 0
  }
  if (parsed === 'version') {
    ctx.out(`${program} 7.2.0 (qimg 0.1.0)\n`)
    return 0
  }
  const s = parsed
  // TLS credentials are objects of their own; the other --object values are secrets.
  const objects = (s.parsed.all.get('object') ?? []).filter((v): v is string => typeof v === 'string')
  s.parsed.all.set('object', objects.filter((o) => !isTlsObject(o)))
  let startTls: ((socket: Socket) => Promise<Socket>) | undefined
  // QEMU creates (and loads) every object while it parses the command line.
  let loaded: LoadedTlsCreds[]
  try {
    loaded = await Promise.all(objects.filter(isTlsObject).map((o) => loadTlsCreds(parseTlsObject(o))))
  } catch (e) {
    if (!isImageError(e)) throw e
    reportError(ctx, e.message)
    return 1
  }
  if (s.tlsCreds !== undefined) {
    try {
      const creds = loaded.find((c) => c.creds.id === s.tlsCreds)
      if (!creds) {
        throw new ImageError('INVALID_ARGUMENT', objects.some((o) => o.includes(`id=${s.tlsCreds}`)) ? `Object with id '${s.tlsCreds}' is not TLS credentials` : `No TLS credentials with id '${s.tlsCreds}'`)
      }
      // -L is a client: its credentials are a client's, checked against the server's name.
      startTls = s.list ? clientTls(creds, s.tlsHostname) : serverTls(creds)
    } catch (e) {
      if (!isImageError(e)) throw e
      reportError(ctx, `Failed to get TLS creds: ${e.message}`)
      return 1
    }
  }
  if (s.list) return listCommand(s, startTls, ctx)
  if (s.fork && process.env[FORKED_ENV] === undefined) return forkServer(args, ctx)
  let opened: { device: BlockDevice; cleanup?: () => Promise<void> }
  try {
    opened = await openExportDevice(s)
  } catch (e) {
    if (isImageError(e, 'NO_SUCH_SNAPSHOT')) reportError(ctx, "Failed to load snapshot: Can't find snapshot")
    else reportError(ctx, `Failed to blk_new_open '${s.image}': ${errorText(ctx, e)}`)
    return 1
  }
  const { device } = opened
  let server: NbdServer | undefined
  try {
    const exp = await NbdExport.create(device, {
      name: s.exportName,
      description: s.description,
      readOnly: s.readOnly,
      maxConnections: s.shared,
      allocationDepth: s.allocationDepth,
      bitmaps: s.bitmaps,
      discard: s.discard,
      detectZeroes: s.detectZeroes,
      writethrough: s.writethrough,
    })
    // Messages about single clients, as qemu-nbd's error_report (stderr, whatever -v says).
    const log = (line: string) => reportError(ctx, line)
    server = new NbdServer([exp], { maxConnections: s.shared, persistent: s.persistent, log, ...(startTls ? { startTls } : {}) })
    try {
      await server.listen(s.socketPath !== undefined ? { path: s.socketPath } : { host: s.bind, port: s.port })
    } catch (e) {
      reportError(ctx, `Failed to ${s.socketPath !== undefined ? 'bind socket to ' + s.socketPath : `bind socket`}: ${(e as Error).message}`)
      return 1
    }
    if (s.pidFile !== undefined) await writeFile(s.pidFile, `${process.pid}\n`)
    const stop = () => void server?.close()
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    process.on('SIGHUP', stop)
    try {
      // Serving: the parent of --fork exits now; later messages have nowhere to go (QEMU: stderr to stdout).
      if (process.env[FORKED_ENV] !== undefined && process.send) {
        process.send('ready')
        process.disconnect?.()
        ctx.err = () => undefined
      }
      await server.finished
    } finally {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      process.off('SIGHUP', stop)
    }
    await device.flush()
    return 0
  } catch (e) {
    if (!isImageError(e)) throw e
    reportError(ctx, errorText(ctx, e))
    return 1
  } finally {
    await server?.close()
    await device.close()
    await opened.cleanup?.()
    if (s.pidFile !== undefined) await rm(s.pidFile, { force: true })
  }
}
