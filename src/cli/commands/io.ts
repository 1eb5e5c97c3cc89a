// qimg io [-f FMT] [--image-opts] [-r] [-U] [-c CMD]... IMG — the qemu-io commands scripts and
// tests need: read, write, discard, flush, map, with qemu-io's output and verification messages.
import { readFile } from 'node:fs/promises'
import { ImageError } from '../../errors.js'
import type { BlockDevice } from '../../format/device.js'
import { getopt, flag, stringOption, type Parsed } from '../getopt.js'
import { parseSize } from '../size.js'
import { cvtstr, hexDump, statsLine } from '../io-format.js'
import { oneOperand, openOperand, parseArgs, type CliContext, type Command } from '../context.js'

function number(text: string | undefined, what: string): number {
  if (text === undefined) throw new ImageError('INVALID_ARGUMENT', `missing ${what}`)
  try {
    return text.startsWith('0x') ? Number.parseInt(text, 16) : parseSize(text)
  } catch {
    throw new ImageError('INVALID_ARGUMENT', `non-numeric ${what} argument -- ${text}`)
  }
}

function pattern(parsed: Parsed): number | undefined {
  const p = stringOption(parsed, 'P')
  if (p === undefined) return undefined
  const value = p.startsWith('0x') ? Number.parseInt(p, 16) : Number.parseInt(p, 10)
  if (!Number.isInteger(value)) throw new ImageError('INVALID_ARGUMENT', `non-numeric pattern -- ${p}`)
  return value & 0xff
}

function offsetAndLength(parsed: Parsed, device: BlockDevice): { offset: number; length: number } {
  const offset = number(parsed.operands[0], 'offset')
  const length = number(parsed.operands[1], 'length')
  // The block layer refuses a request past the end with EIO, which qemu-io reports.
  if (offset + length > device.size) throw new ImageError('OUT_OF_RANGE', 'Input/output error')
  return { offset, length }
}

/** Runs one qemu-io command line; returns false when the command failed. */
async function runCommand(line: string, device: BlockDevice, ctx: CliContext): Promise<boolean> {
  const words = line.trim().split(/\s+/)
  const name = words.shift()
  const started = performance.now()
  const elapsed = () => (performance.now() - started) / 1000
  switch (name) {
    case 'read': {
      const parsed = getopt(words, [{ short: 'P', value: true }, { short: 'v', value: false }, { short: 'q', value: false }])
      const { offset, length } = offsetAndLength(parsed, device)
      const data = await device.read(offset, length)
      const expected = pattern(parsed)
      let ok = true
      if (expected !== undefined && data.some((b) => b !== expected)) {
        ctx.out(`Pattern verification failed at offset ${offset}, ${length} bytes\n`)
        ok = false
      }
      if (flag(parsed, 'v')) ctx.out(hexDump(data, offset))
      if (!flag(parsed, 'q')) ctx.out(`read ${length}/${length} bytes at offset ${offset}\n${statsLine(length, 1, elapsed())}\n`)
      return ok
    }
    case 'write': {
      const parsed = getopt(words, [{ short: 'P', value: true }, { short: 'z', value: false }, { short: 'u', value: false }, { short: 's', value: true }, { short: 'q', value: false }, { short: 'c', value: false }])
      const { offset, length } = offsetAndLength(parsed, device)
      if (flag(parsed, 'c')) {
        const cs = device.clusterSize ?? length
        for (let at = offset; at < offset + length; at += cs) {
          await device.writeCompressed(at, new Uint8Array(Math.min(cs, offset + length - at)).fill(pattern(parsed) ?? 0xcd))
        }
      } else if (flag(parsed, 'z')) {
        await device.writeZeroes(offset, length, { unmap: flag(parsed, 'u') })
      } else {
        let data: Uint8Array
        const source = stringOption(parsed, 's')
        if (source !== undefined) {
          const bytes = await readFile(source)
          if (bytes.length < length) throw new ImageError('INVALID_ARGUMENT', `source file ${source} is shorter than ${length} bytes`)
          data = bytes.subarray(0, length)
        } else {
          data = new Uint8Array(length).fill(pattern(parsed) ?? 0xcd)
        }
        await device.write(offset, data)
      }
      if (!flag(parsed, 'q')) ctx.out(`wrote ${length}/${length} bytes at offset ${offset}\n${statsLine(length, 1, elapsed())}\n`)
      return true
    }
    case 'discard': {
      const parsed = getopt(words, [{ short: 'q', value: false }])
      const { offset, length } = offsetAndLength(parsed, device)
      await device.discard(offset, length)
      if (!flag(parsed, 'q')) ctx.out(`discard ${length}/${length} bytes at offset ${offset}\n${statsLine(length, 1, elapsed())}\n`)
      return true
    }
    case 'flush':
      await device.flush()
      return true
    case 'map': {
      let offset = 0
      while (offset < device.size) {
        let { allocated, length } = await device.isAllocated(offset, device.size - offset)
        // Merge runs with the same state, as qemu-io's map does.
        while (offset + length < device.size) {
          const next = await device.isAllocated(offset + length, device.size - offset - length)
          if (next.allocated !== allocated) break
          length += next.length
        }
        ctx.out(`${cvtstr(length)} (0x${length.toString(16)}) bytes ${allocated ? '    allocated' : 'not allocated'} at offset ${cvtstr(offset)} (0x${offset.toString(16)})\n`)
        offset += length
      }
      return true
    }
    default:
      ctx.out(`command "${name}" not found\n`)
      return false
  }
}

export const io: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'c', long: 'cmd', value: true, key: 'cmd' },
    { short: 'r', long: 'read-only', value: false, key: 'read-only' },
  ])
  const filename = oneOperand(parsed)
  const device = await openOperand(filename, parsed, { writable: !flag(parsed, 'read-only') })
  let failed = false
  try {
    for (const cmd of parsed.all.get('cmd') ?? []) {
      try {
        if (!(await runCommand(String(cmd), device, ctx))) failed = true
      } catch (e) {
        failed = true
        const verb = String(cmd).trim().split(/\s+/)[0]
        ctx.out(`${verb} failed: ${(e as Error).message}\n`)
      }
    }
  } finally {
    await device.close()
  }
  return failed ? 1 : 0
}
