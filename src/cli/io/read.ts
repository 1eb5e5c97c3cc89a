// qemu-io's reads: read, readv, aio_read — pattern verification, -v dumps and the reports.
import { readCopyOnRead } from '../../format/copy-on-read.js'
import { hexDump } from '../io-format.js'
import { CommandOptions, EINVAL, ERANGE, parsePattern, sizeArgument, vectorLengths } from './args.js'
import { BDRV_REQUEST_MAX_BYTES, checkRange, usage, vectoredOptions, type CommandInfo } from './command.js'
import { report, startTimer, strerror } from './report.js'
import type { Session } from './session.js'

const INT_MAX = 2 ** 31 - 1

/** Reads guest bytes (copy-on-read when the image was opened with -C or through the filter). */
async function readBytes(session: Session, offset: number, length: number): Promise<Uint8Array> {
  const device = session.device
  checkRange(device, offset, length)
  if (session.image!.flags.copyOnRead || device.copyOnRead) return readCopyOnRead(device, offset, length)
  return device.read(offset, length)
}

/** "Pattern verification failed …" unless `data` is all `pattern`; true when it matched. */
function verify(print: (text: string) => void, data: Uint8Array, pattern: number, offset: number): boolean {
  if (data.every((b) => b === pattern)) return true
  print(`Pattern verification failed at offset ${offset}, ${data.length} bytes\n`)
  return false
}

const read: CommandInfo = {
  name: 'read', altname: 'r', argmin: 2, argmax: -1, args: '[-abCqv] [-P pattern [-s off] [-l len]] off len',
  oneline: 'reads a number of bytes at a specified offset',
  help: `
 reads a range of bytes from the given offset

 Example:
 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 -b, -- read from the VM state rather than the virtual disk
 -C, -- report statistics in a machine parsable format
 -l, -- length for pattern verification (only with -P)
 -p, -- ignored for backwards compatibility
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -s, -- start offset for pattern verification (only with -P)
 -v, -- dump buffer to standard output

`,
  run: async (session, words) => {
    const options = new CommandOptions(session, words, 'bCl:pP:qs:v')
    const flags = new Set<string>()
    let pattern = 0
    let patternOffset = 0
    let patternCount = 0
    for (let o = options.next(); o; o = options.next()) {
      const [letter, value] = o
      if (letter === 'l' || letter === 's') {
        const n = sizeArgument(session, value)
        if (n < 0) return n
        if (letter === 'l') patternCount = n
        else patternOffset = n
      } else if (letter === 'P') {
        pattern = parsePattern(session, value)
        if (pattern < 0) return -EINVAL
      } else if (letter === '?') return usage(session, read)
      flags.add(letter)
    }
    if (options.operands.length !== 2) return usage(session, read)
    const [offsetText, countText] = options.operands as [string, string]
    const offset = sizeArgument(session, offsetText)
    if (offset < 0) return offset
    const count = sizeArgument(session, countText)
    if (count < 0) return count
    if (count > BDRV_REQUEST_MAX_BYTES) {
      session.out(`length cannot exceed ${BDRV_REQUEST_MAX_BYTES}, given ${countText}\n`)
      return -EINVAL
    }
    if (!flags.has('P') && (flags.has('l') || flags.has('s'))) return usage(session, read)
    if (!flags.has('l')) patternCount = count - patternOffset
    if (patternCount < 0 || patternCount + patternOffset > count) {
      session.out('pattern verification range exceeds end of read data\n')
      return -EINVAL
    }
    if (flags.has('b')) {
      for (const [value, what] of [[offset, 'offset'], [count, 'count']] as const) {
        if (value % 512 !== 0) {
          session.out(`${value} is not a sector-aligned value for '${what}'\n`)
          return -EINVAL
        }
      }
    }
    if (count > INT_MAX) {
      session.out(`read failed: ${strerror({ code: 'ERANGE' })}\n`)
      return -ERANGE
    }
    const elapsed = startTimer()
    let data: Uint8Array
    try {
      // -b: the VM state area (blk_load_vmstate), ENOTSUP where the format has none.
      data = flags.has('b') ? await session.device.loadVmState(offset, count) : await readBytes(session, offset, count)
    } catch (e) {
      session.out(`read failed: ${strerror(e)}\n`)
      return -5
    }
    const seconds = elapsed()
    let ret = 0
    if (flags.has('P') && !verify((text) => session.out(text), data.subarray(patternOffset, patternOffset + patternCount), pattern, offset + patternOffset)) ret = -EINVAL
    if (flags.has('q')) return ret
    if (flags.has('v')) session.out(hexDump(data, offset))
    session.out(report('read', seconds, offset, count, count, 1, flags.has('C')))
    return ret
  },
}

/**
 * The shared part of readv and aio_read: options, then the read and its report. The result is
 * the return code and whether the request was submitted (aio_read then succeeds whatever came).
 */
async function vectoredRead(session: Session, words: string[], command: CommandInfo, spec: string, aio: boolean): Promise<[number, boolean]> {
  const refused = (code: number): [number, boolean] => [code, false]
  const print = (text: string): void => (aio ? session.outOnCompletion(text) : session.out(text))
  const parsed = vectoredOptions(session, words, command, spec, 'read', 0)
  if ('stop' in parsed) return refused(parsed.stop)
  const { flags, pattern, operands } = parsed
  if (operands.length < 2) return refused(usage(session, command))
  const [offsetText, ...lengthTexts] = operands as [string, ...string[]]
  const offset = sizeArgument(session, offsetText)
  if (offset < 0) return refused(offset)
  const lengths = vectorLengths(session, lengthTexts, BDRV_REQUEST_MAX_BYTES)
  if (!lengths) return refused(-EINVAL)
  const size = lengths.reduce((a, b) => a + b, 0)
  const elapsed = startTimer()
  const perform = async (): Promise<number> => {
    let data: Uint8Array
    try {
      data = await readBytes(session, offset, size)
    } catch (e) {
      print(`readv failed: ${strerror(e)}\n`)
      return -5
    }
    const seconds = elapsed()
    const ret = flags.has('P') && !verify(print, data, pattern, offset) ? -EINVAL : 0
    if (flags.has('q')) return ret
    if (flags.has('v')) print(hexDump(data, offset))
    print(report('read', seconds, offset, size, size, 1, flags.has('C')))
    return ret
  }
  // aio_read's request runs on while later commands do (blk_aio_preadv).
  if (aio) return session.submit(perform().then(() => undefined)), [0, true]
  return [await perform(), true]
}

const readv: CommandInfo = {
  name: 'readv', argmin: 2, argmax: -1, args: '[-Cqv] [-P pattern] off len [len..]',
  oneline: 'reads a number of bytes at a specified offset',
  help: `
 reads a range of bytes from the given offset into multiple buffers

 Example:
 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 Uses multiple iovec buffers if more than one byte range is specified.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

`,
  run: async (session, words) => {
    return (await vectoredRead(session, words, readv, 'CP:qv', false))[0]
  },
}

const aioRead: CommandInfo = {
  name: 'aio_read', argmin: 2, argmax: -1, args: '[-Ciqv] [-P pattern] off len [len..]',
  oneline: 'asynchronously reads a number of bytes',
  help: `
 asynchronously reads a range of bytes from the given offset

 Example:
 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 The read is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -i, -- treat request as invalid, for exercising stats
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

`,
  run: async (session, words) => {
    const [ret, submitted] = await vectoredRead(session, words, aioRead, 'CP:iqv', true)
    // Submitted is success: a failed or mismatching read only prints.
    return submitted ? 0 : ret
  },
}

/** The commands of this file. */
export const READ_COMMANDS: CommandInfo[] = [read, readv, aioRead]
