// qemu-io's commands that are not reads or writes: flush, truncate, length, info, discard, alloc,
// map, sleep, sigraise, abort (texts and checks as in QEMU 7.2's qemu-io-cmds.c).
import { resizeImage } from '../../commands/resize.js'
import type { BlockDevice } from '../../format/device.js'
import { hasVmState } from '../../format/capabilities.js'
import { formatSpecificHuman } from '../human.js'
import { cvtstr } from '../io-format.js'
import { CommandOptions, cvtnum, cvtnumError, EINVAL, sizeArgument, strtolWhole } from './args.js'
import { BDRV_REQUEST_MAX_BYTES, checkRange, usage, type CommandInfo } from './command.js'
import { report, startTimer, strerror } from './report.js'

const EIO = 5

const flush: CommandInfo = {
  name: 'flush', altname: 'f', oneline: 'flush all in-core file state to disk',
  run: async (session) => {
    try {
      await session.device.flush()
      return 0
    } catch {
      return -EIO // blk_flush's error is only the exit code
    }
  },
}

const PREALLOC_MODES = ['off', 'metadata', 'falloc', 'full'] as const

const truncate: CommandInfo = {
  name: 'truncate', altname: 't', argmin: 1, argmax: 3, write: true, args: '[-m prealloc_mode] off',
  oneline: 'truncates the current file at the given offset',
  run: async (session, words) => {
    const options = new CommandOptions(session, words, 'm:')
    let prealloc: (typeof PREALLOC_MODES)[number] = 'off'
    for (let o = options.next(); o; o = options.next()) {
      if (o[0] === 'm') {
        const mode = PREALLOC_MODES.find((m) => m === o[1])
        if (!mode) {
          session.report(`Invalid preallocation mode '${o[1]}'`)
          return -EINVAL
        }
        prealloc = mode
      } else return usage(session, truncate)
    }
    const text = options.operands[0] ?? ''
    const offset = cvtnum(text)
    if (offset < 0) {
      session.out(cvtnumError(offset, words[1]!))
      return offset
    }
    try {
      // qemu-io shrinks without asking (blk_truncate): no --shrink here.
      await resizeImage(session.device, offset, { shrink: true, preallocation: prealloc })
      return 0
    } catch (e) {
      session.report((e as Error).message)
      return -EINVAL
    }
  },
}

const length: CommandInfo = {
  name: 'length', altname: 'l', oneline: 'gets the length of the current file',
  run: async (session) => {
    session.out(`${cvtstr(session.device.size)}\n`)
    return 0
  },
}

/** bdrv_get_info's vm_state_offset (0 for formats without a VM state area, as it leaves it). */
function vmStateOffsetOf(device: BlockDevice): number {
  const driver = device.driver
  return hasVmState(driver) ? driver.vmStateOffset() : 0
}

const info: CommandInfo = {
  name: 'info', altname: 'i', oneline: 'prints information about the current file',
  run: async (session) => {
    const device = session.device
    const facts = await device.info()
    session.out(`format name: ${facts.format}\n`)
    session.out(`cluster size: ${cvtstr(facts.clusterSize ?? 0)}\n`)
    session.out(`vm state offset: ${cvtstr(vmStateOffsetOf(device))}\n`)
    session.out(formatSpecificHuman(facts))
    return 0
  },
}

const discard: CommandInfo = {
  name: 'discard', altname: 'd', argmin: 2, argmax: -1, write: true, args: '[-Cq] off len',
  oneline: 'discards a number of bytes at a specified offset',
  help: `
 discards a range of bytes from the given offset

 Example:
 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

 Discards a segment of the currently open file.
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics

`,
  run: async (session, words) => {
    const options = new CommandOptions(session, words, 'Cq')
    let machine = false
    let quiet = false
    for (let o = options.next(); o; o = options.next()) {
      if (o[0] === 'C') machine = true
      else if (o[0] === 'q') quiet = true
      else return usage(session, discard)
    }
    if (options.operands.length !== 2) return usage(session, discard)
    const [offsetText, bytesText] = options.operands as [string, string]
    const offset = sizeArgument(session, offsetText)
    if (offset < 0) return offset
    const bytes = sizeArgument(session, bytesText)
    if (bytes < 0) return bytes
    if (bytes > BDRV_REQUEST_MAX_BYTES) {
      session.out(`length cannot exceed ${BDRV_REQUEST_MAX_BYTES}, given ${bytesText}\n`)
      return -EINVAL
    }
    const elapsed = startTimer()
    try {
      checkRange(session.device, offset, bytes)
      // discard=ignore (-d ignore) makes discard requests succeed without effect.
      if (session.image!.flags.discardUnmap) await session.device.discard(offset, bytes)
    } catch (e) {
      session.out(`discard failed: ${strerror(e)}\n`)
      return -EIO
    }
    if (!quiet) session.out(report('discard', elapsed(), offset, bytes, bytes, 1, machine))
    return 0
  },
}

const alloc: CommandInfo = {
  name: 'alloc', altname: 'a', argmin: 1, argmax: 2, args: 'offset [count]',
  oneline: 'checks if offset is allocated in the file',
  run: async (session, words) => {
    const start = sizeArgument(session, words[1]!)
    if (start < 0) return start
    let count = 512
    if (words.length === 3) {
      count = sizeArgument(session, words[2]!)
      if (count < 0) return count
    }
    const device = session.device
    let offset = start
    let remaining = count
    let allocatedBytes = 0
    while (remaining > 0) {
      // Past the end bdrv_is_allocated answers 0 bytes: the count shrinks to what was asked.
      const status = offset >= device.size ? { allocated: false, length: 0 } : await device.isAllocated(offset, Math.min(remaining, device.size - offset))
      offset += status.length
      remaining -= status.length
      if (status.allocated) allocatedBytes += status.length
      if (status.length === 0) {
        count -= remaining
        remaining = 0
      }
    }
    session.out(`${allocatedBytes}/${count} bytes allocated at offset ${cvtstr(start)}\n`)
    return 0
  },
}

const map: CommandInfo = {
  name: 'map', args: '', oneline: 'prints the allocated areas of a file',
  run: async (session) => {
    const device = session.device
    let offset = 0
    while (offset < device.size) {
      const { allocated } = await device.isAllocated(offset, device.size - offset)
      let length = 0
      // map_is_allocated: one line per run of the same state.
      while (offset + length < device.size) {
        const next = await device.isAllocated(offset + length, device.size - offset - length)
        if (next.allocated !== allocated || next.length === 0) break
        length += next.length
      }
      session.out(`${cvtstr(length)} (0x${length.toString(16)}) bytes ${allocated ? '    allocated' : 'not allocated'} at offset ${cvtstr(offset)} (0x${offset.toString(16)})\n`)
      offset += length
    }
    return 0
  },
}

const sleep: CommandInfo = {
  name: 'sleep', argmin: 1, argmax: 1, nofileOk: true, oneline: 'waits for the given value in milliseconds',
  run: async (session, words) => {
    const ms = strtolWhole(words[1]!)
    if (!(ms >= 0)) {
      session.out(`${words[1]} is not a valid number\n`)
      return -EINVAL
    }
    await new Promise((resolve) => setTimeout(resolve, ms))
    return 0
  },
}

/** Linux's NSIG. */
const NSIG = 65

const sigraise: CommandInfo = {
  name: 'sigraise', argmin: 1, argmax: 1, nofileOk: true, args: 'signal', oneline: 'raises a signal',
  help: `
 raises the given signal

 Example:
 'sigraise 15' - raises SIGTERM

 Invokes raise(signal), where "signal" is the mandatory integer argument
 given to sigraise.

`,
  run: async (session, words) => {
    const signal = sizeArgument(session, words[1]!)
    if (signal < 0) return signal
    if (signal > NSIG) {
      session.out(`signal argument '${words[1]}' is too large to be a valid signal\n`)
      return -EINVAL
    }
    // raise() may end the process without flushing stdio: qemu-io flushes both streams first.
    session.flushStdout()
    if (signal !== 0) process.kill(process.pid, signal)
    return 0
  },
}

const abort: CommandInfo = {
  name: 'abort', nofileOk: true, oneline: 'simulate a program crash using abort(3)',
  // abort(3) flushes nothing: what stdout still buffers is lost, as with qemu-io.
  run: async () => {
    process.kill(process.pid, 'SIGABRT')
    return 0
  },
}

/** The commands of this file. */
export const MISC_COMMANDS: CommandInfo[] = [flush, truncate, length, info, discard, alloc, map, sleep, sigraise, abort]
