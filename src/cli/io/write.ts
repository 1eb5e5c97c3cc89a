// qemu-io's writes: write (pattern, -s file, -z zeroes, -c compressed), writev, aio_write,
// aio_flush — checks, messages and reports as qemu-io 7.2 prints them.
import { openSync, readSync, closeSync } from 'node:fs'
import { CommandOptions, EINVAL, parsePattern, sizeArgument, vectorLengths } from './args.js'
import { BDRV_REQUEST_MAX_BYTES, checkRange, usage, vectoredOptions, type CommandInfo } from './command.js'
import { errnoOf, report, startTimer, strerror } from './report.js'
import type { Session } from './session.js'

/** What a write puts down. */
type Payload = { kind: 'data'; data: Uint8Array } | { kind: 'zeroes'; unmap: boolean } | { kind: 'compressed'; data: Uint8Array }

/** Writes `payload` at `offset`; -f (FUA) and writethrough images flush after it. */
async function writeBytes(session: Session, offset: number, length: number, payload: Payload, fua: boolean): Promise<void> {
  const device = session.device
  checkRange(device, offset, length)
  if (payload.kind === 'zeroes') await device.writeZeroes(offset, length, { unmap: payload.unmap })
  else if (payload.kind === 'compressed') await writeCompressed(session, offset, payload.data)
  else await device.write(offset, payload.data)
  if (fua || session.image!.flags.writethrough) await device.flush()
}

/** -b: the VM state area (blk_save_vmstate: flushed after it unless the write cache is on). */
async function saveVmState(session: Session, offset: number, payload: Payload): Promise<void> {
  if (payload.kind === 'zeroes') throw new Error('write -b takes data') // -b and -z are refused earlier
  await session.device.saveVmState(offset, payload.data)
  if (session.image!.flags.writethrough) await session.device.flush()
}

/** qcow2_co_pwritev_compressed_part: cluster-aligned, whole clusters except at the image's end. */
async function writeCompressed(session: Session, offset: number, data: Uint8Array): Promise<void> {
  const device = session.device
  const clusterSize = device.clusterSize
  if (clusterSize === undefined) throw Object.assign(new Error('compressed writes are not supported'), { code: 'ENOTSUP' })
  if (offset % clusterSize !== 0 || (data.length % clusterSize !== 0 && offset + data.length !== device.size)) {
    throw Object.assign(new Error('unaligned compressed write'), { code: 'EINVAL' })
  }
  for (let at = 0; at < data.length; at += clusterSize) await device.writeCompressed(offset + at, data.subarray(at, Math.min(at + clusterSize, data.length)))
}

/** qemu_io_alloc_from_file: the file's bytes, repeated to fill `length`; undefined after an error. */
function bytesFromFile(session: Session, name: string, length: number): Uint8Array | undefined {
  let fd: number
  try {
    fd = openSync(name, 'r')
  } catch (e) {
    session.err(`${name}: ${strerror(e)}\n`) // perror
    return undefined
  }
  const data = new Uint8Array(length)
  let filled = 0
  try {
    while (filled < length) {
      const n = readSync(fd, data, filled, length - filled, null)
      if (n === 0) break
      filled += n
    }
  } catch (e) {
    session.err(`${name}: ${strerror(e)}\n`)
    return undefined
  } finally {
    closeSync(fd)
  }
  if (filled === 0) {
    session.err(`${name}: file is empty\n`)
    return undefined
  }
  for (let at = filled; filled > 0 && at < length; at += filled) data.copyWithin(at, 0, Math.min(filled, length - at))
  return data
}

const write: CommandInfo = {
  name: 'write', altname: 'w', argmin: 2, argmax: -1, write: true,
  args: '[-bcCfnquz] [-P pattern | -s source_file] off len',
  oneline: 'writes a number of bytes at a specified offset',
  help: `
 writes a range of bytes from the given offset

 Example:
 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -b, -- write to the VM state rather than the virtual disk
 -c, -- write compressed data with blk_write_compressed
 -f, -- use Force Unit Access semantics
 -n, -- with -z, don't allow slow fallback
 -p, -- ignored for backwards compatibility
 -P, -- use different pattern to fill file
 -s, -- use a pattern file to fill the write buffer
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_co_pwrite_zeroes

`,
  run: async (session, words) => {
    const options = new CommandOptions(session, words, 'bcCfnpP:qs:uz')
    const flags = new Set<string>()
    let pattern = 0xcd
    let fileName = ''
    for (let o = options.next(); o; o = options.next()) {
      const [letter, value] = o
      if (letter === 'P') {
        pattern = parsePattern(session, value)
        if (pattern < 0) return -EINVAL
      } else if (letter === 's') fileName = value
      else if (letter === '?') return usage(session, write)
      flags.add(letter)
    }
    if (options.operands.length !== 2) return usage(session, write)
    const has = (letter: string): boolean => flags.has(letter)
    const refuse = (text: string): number => (session.out(`${text}\n`), -EINVAL)
    if (has('b') && has('z')) return refuse('-b and -z cannot be specified at the same time')
    if (has('f') && (has('b') || has('c'))) return refuse('-f and -b or -c cannot be specified at the same time')
    if (has('n') && !has('z')) return refuse('-n requires -z to be specified')
    if (has('u') && !has('z')) return refuse('-u requires -z to be specified')
    if (Number(has('z')) + Number(has('P')) + Number(has('s')) > 1) return refuse('Only one of -z, -P, and -s can be specified at the same time')
    const [offsetText, countText] = options.operands as [string, string]
    const offset = sizeArgument(session, offsetText)
    if (offset < 0) return offset
    const count = sizeArgument(session, countText)
    if (count < 0) return count
    if (count > BDRV_REQUEST_MAX_BYTES && !has('n')) return refuse(`length cannot exceed ${BDRV_REQUEST_MAX_BYTES} without -n, given ${countText}`)
    if (has('b') || has('c')) {
      if (offset % 512 !== 0) return refuse(`${offset} is not a sector-aligned value for 'offset'`)
      if (count % 512 !== 0) return refuse(`${count} is not a sector-aligned value for 'count'`)
    }
    let payload: Payload = { kind: 'zeroes', unmap: has('u') }
    if (!has('z')) {
      const data = has('s') ? bytesFromFile(session, fileName, count) : new Uint8Array(count).fill(pattern)
      if (!data) return -EINVAL
      payload = { kind: has('c') ? 'compressed' : 'data', data }
    }
    const elapsed = startTimer()
    try {
      if (has('b')) await saveVmState(session, offset, payload)
      else await writeBytes(session, offset, count, payload, has('f'))
    } catch (e) {
      session.out(`write failed: ${strerror(e)}\n`)
      return errnoOf(e) === 'EINVAL' ? -EINVAL : -5
    }
    if (!has('q')) session.out(report('wrote', elapsed(), offset, count, count, 1, has('C')))
    return 0
  },
}

const writev: CommandInfo = {
  name: 'writev', argmin: 2, argmax: -1, write: true, args: '[-Cfq] [-P pattern] off len [len..]',
  oneline: 'writes a number of bytes at a specified offset',
  help: `
 writes a range of bytes from the given offset source from multiple buffers

 Example:
 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -q, -- quiet mode, do not show I/O statistics

`,
  run: async (session, words) => (await vectoredWrite(session, words, writev, 'CfqP:', false))[0],
}

/**
 * The shared part of writev and aio_write: the return code and whether the request was
 * submitted (aio_write then succeeds whatever came of it).
 */
async function vectoredWrite(session: Session, words: string[], command: CommandInfo, spec: string, aio: boolean): Promise<[number, boolean]> {
  const refused = (code: number): [number, boolean] => [code, false]
  const print = (text: string): void => (aio ? session.outOnCompletion(text) : session.out(text))
  const parsed = vectoredOptions(session, words, command, spec, 'write', 0xcd)
  if ('stop' in parsed) return refused(parsed.stop)
  const { flags, pattern, operands } = parsed
  if (operands.length < 2) return refused(usage(session, command))
  // aio_write's -P never sets its Pflag: "-z and -P" is never refused (qemu-io 7.2).
  if (flags.has('z') && operands.length !== 2) return session.out('-z supports only a single length parameter\n'), refused(-EINVAL)
  if (flags.has('u') && !flags.has('z')) return session.out('-u requires -z to be specified\n'), refused(-EINVAL)
  const [offsetText, ...lengthTexts] = operands as [string, ...string[]]
  const offset = sizeArgument(session, offsetText)
  if (offset < 0) return refused(offset)
  let size: number
  let payload: Payload
  // aio_write -z starts no stopwatch: its report counts from the clock's origin (CLOCK_MONOTONIC).
  let elapsed = (): number => Number(process.hrtime.bigint()) / 1e9
  if (flags.has('z')) {
    size = sizeArgument(session, lengthTexts[0]!)
    if (size < 0) return refused(size)
    payload = { kind: 'zeroes', unmap: flags.has('u') }
  } else {
    const lengths = vectorLengths(session, lengthTexts, BDRV_REQUEST_MAX_BYTES)
    if (!lengths) return refused(-EINVAL)
    size = lengths.reduce((a, b) => a + b, 0)
    payload = { kind: 'data', data: new Uint8Array(size).fill(pattern) }
    elapsed = startTimer()
  }
  const perform = async (): Promise<number> => {
    try {
      await writeBytes(session, offset, size, payload, flags.has('f'))
    } catch (e) {
      print(`${aio ? 'aio_write' : 'writev'} failed: ${strerror(e)}\n`)
      return -5
    }
    if (!flags.has('q')) print(report('wrote', elapsed(), offset, size, size, 1, flags.has('C')))
    return 0
  }
  // aio_write's request runs on while later commands do (blk_aio_pwritev).
  if (aio) return session.submit(perform().then(() => undefined)), [0, true]
  return [await perform(), true]
}

const aioWrite: CommandInfo = {
  name: 'aio_write', argmin: 2, argmax: -1, write: true, args: '[-Cfiquz] [-P pattern] off len [len..]',
  oneline: 'asynchronously writes a number of bytes',
  help: `
 asynchronously writes a range of bytes from the given offset source
 from multiple buffers

 Example:
 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 The write is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -i, -- treat request as invalid, for exercising stats
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_aio_pwrite_zeroes

`,
  run: async (session, words) => {
    const [ret, submitted] = await vectoredWrite(session, words, aioWrite, 'CfiqP:uz', true)
    return submitted ? 0 : ret
  },
}

const aioFlush: CommandInfo = {
  name: 'aio_flush', oneline: 'completes all outstanding aio requests',
  run: async (session) => (await session.drain(), 0),
}

/** The commands of this file. */
export const WRITE_COMMANDS: CommandInfo[] = [write, writev, aioWrite, aioFlush]
