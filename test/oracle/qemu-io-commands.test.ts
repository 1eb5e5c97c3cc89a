// Oracle: qimg started as qemu-io (through a link of that name) prints what qemu-io 7.2 prints —
// stdout and stderr merged as qemu-iotests capture them (2>&1: stdio's buffering decides where
// error lines land), timing filtered as _filter_qemu_io does — exits with its code and leaves the
// image it leaves. Each script runs with -c options and again from standard input (prompts).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { filterQemuIo as filtered, needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'

const work = sharedWorkDir('qimg-oracle-qemu-io-', async (dir) => {
  const at = (name: string): string => join(dir, name)
  writeFileSync(at('source.bin'), 'abcdefghij') // write -s repeats it
  writeFileSync(at('empty.bin'), '')
  const script = [
    'qemu-img create -q -f qcow2 base.qcow2 1M',
    "qemu-io -f qcow2 -c 'write -P 0x11 0 1M' base.qcow2",
    'qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2',
    'qemu-img create -q -f qcow2 plain.qcow2 1M',
    'qemu-img create -q -f raw plain.raw 1M',
  ].join(' >/dev/null && ')
  await runOk('sh', ['-c', script], { cwd: dir })
}, ['qemu-io'])
const { dir, at } = work

/** Runs `program args` in the work directory with `input` on stdin; stdout and stderr merged. */
function runMerged(program: string, args: readonly string[], input: string): Promise<{ output: string; code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', 'exec "$0" "$@" 2>&1', program, ...args], { cwd: dir, stdio: ['pipe', 'pipe', 'inherit'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ output, code, signal }))
    // A program that exits before reading its input (a bad option) closes the pipe: not an error.
    child.stdin.on('error', () => undefined)
    child.stdin.end(input)
  })
}

interface Script {
  name: string
  /** The image both tools get a copy of (none: qemu-io starts without one). */
  image?: string
  /** Options before the commands (default -f qcow2 or -f raw from the image's name). */
  options?: string[]
  commands: string[]
  /**
   * Where stderr lines land among stdout's blocks depends on the length of the timing lines:
   * compare stdout with them taken out, and check that each came after whole 4096-byte blocks.
   */
  errorLine?: string
}

/** The transcript without `line`, after checking that stdout had left in whole blocks before each. */
function withoutErrorLines(output: string, line: string): string {
  const parts = output.split(line)
  let stdoutBytes = 0
  for (const part of parts.slice(0, -1)) {
    stdoutBytes += Buffer.byteLength(part)
    assert.equal(stdoutBytes % 4096, 0, `"${line.trim()}" after ${stdoutBytes} bytes of stdout`)
  }
  assert.ok(parts.length > 1, 'the script has error lines')
  return parts.join('')
}

const SCRIPTS: Script[] = [
  {
    name: 'reads and writes: patterns, -v, -C, -q, -l/-s, mismatches',
    image: 'plain.qcow2',
    commands: [
      'write -P 0x41 0 4k', 'read -P 0x41 0 4k', 'read -P 0x42 0 512', 'read -v 4000 130', 'read -C 0 512', 'write -q -P 7 8k 512',
      'read -P 7 -s 512 -l 512 7680 1k', 'read -P 7 -s 512 7680 1k', 'read -l 5 0 512', 'read -P 7 -s 600 -l 600 0 1k', 'w -p 1M 0', 'r 0 0',
    ],
  },
  {
    name: 'vectored and aio requests, flush, write -z/-u/-f/-s, discard, alloc, map, length',
    image: 'overlay.qcow2',
    commands: [
      'writev -P 3 1000 1k 2k 512', 'readv -P 3 1000 3k 512', 'readv -v 1000 16 16', 'aio_write -P 9 64k 64k', 'aio_flush', 'aio_read -P 9 64k 64k', 'aio_flush',
      'aio_read -P 8 64k 512', 'aio_flush', 'aio_write -z -u 128k 64k', 'aio_flush', 'write -z 200k 8k', 'write -f -P 5 300k 4k', 'write -s source.bin 400k 25',
      'read -v 400k 32', 'discard 448k 64k', 'discard -q 512k 64k', 'flush', 'alloc 0 1M', 'alloc 64k', 'alloc 1000k 100k', 'map', 'length', 'info',
    ],
  },
  {
    name: 'argument errors',
    image: 'plain.qcow2',
    commands: [
      'frobnicate', 'read 0', 'read -x 0 1', 'read -P', 'read -P 300 0 1', 'read -P 0x1g 0 1', 'read 0 1Q', 'read 0 3G', 'read 1 1 1', 'read -b 1 512',
      'write -u 0 1', 'write -n 0 1', 'write -z -P 1 0 1', 'write -b -z 0 1', 'write -f -c 0 512', 'write -c 1 512', 'write -s empty.bin 0 1', 'write -s missing.bin 0 1',
      'readv 0', 'writev 0 1k 9E', 'aio_write -z 0 1 2', 'aio_write -u 0 1', 'aio_read -i 0 1', 'aio_write -i 0 1', 'flush now', 'map x', 'length 1', 'alloc', 'alloc x',
      'discard 0', 'discard -x 0 1', 'truncate -m bogus 1M', 'help read', 'help nothing', 'help', 'help a b', 'sleep x', 'sleep 1', 'sigraise 99', '', '   ',
    ],
  },
  {
    name: 'requests past the end and a read-only image',
    image: 'plain.qcow2',
    options: ['-f', 'qcow2', '-r'],
    commands: ['read 1M 1', 'read 1000k 100k', 'write 0 1', 'writev 0 1', 'aio_write 0 1', 'discard 0 1', 'truncate 2M', 'read -P 0 0 64k', 'alloc 0 2M'],
  },
  {
    name: 'open, close, reopen, truncate, and no image',
    commands: [
      'read 0 1', 'info', 'open', 'open -o driver=qcow2', 'open missing.qcow2', 'open -x plain.qcow2', 'open -t bogus plain.qcow2', 'open -r -o driver=qcow2 plain.qcow2',
      'open plain.qcow2', 'write 0 1', 'reopen -w', 'write -P 0x21 0 1', 'reopen -r -w', 'reopen -r', 'write 0 1', 'reopen x', 'close', 'close', 'length',
      'open -o driver=qcow2,file.filename=plain.qcow2', 'truncate 2M', 'length', 'write -P 6 1M 512', 'truncate 1536k', 'map', 'quit', 'read 0 1',
    ],
  },
  { name: 'a raw image', image: 'plain.raw', commands: ['write -P 1 512 1k', 'read -P 1 512 1k', 'write -z 4k 4k', 'alloc 0 1M', 'map', 'info', 'truncate 2M', 'length'] },
  // Long enough for stdout to leave its buffer in blocks while errors go straight to stderr.
  { name: 'many reports between errors', image: 'plain.qcow2', errorLine: 'bad argument count 1 to read, expected at least 2 arguments\n', commands: Array.from({ length: 60 }, (_, i) => (i % 7 === 3 ? 'read 0' : `write -P ${i} ${i * 512} 512`)) },
]

let copies = 0

/** Runs one script with both tools, as -c options (`stdin` false) or from standard input. */
async function compare(script: Script, stdin: boolean): Promise<void> {
  const n = ++copies
  const images: string[] = []
  const args = (which: string): string[] => {
    const image = script.image === undefined ? [] : [`${which}${n}-${script.image}`]
    images.push(...image)
    if (script.image !== undefined) copyFileSync(at(script.image), at(image[0]!))
    const options = script.options ?? (script.image === undefined ? [] : ['-f', script.image.endsWith('.raw') ? 'raw' : 'qcow2'])
    return [...options, ...(stdin ? [] : script.commands.flatMap((c) => ['-c', c])), ...image]
  }
  const input = stdin ? script.commands.map((c) => `${c}\n`).join('') : ''
  // The open command names plain.qcow2: each tool gets its own copy in its own directory.
  const [theirs, ours] = [await runMerged('qemu-io', args('q'), input), await runMerged(process.execPath, [work.linked('qemu-io'), ...args('o')], input)]
  const transcript = (output: string): string => filtered(script.errorLine === undefined || stdin ? output : withoutErrorLines(output, script.errorLine))
  assert.equal(transcript(ours.output), transcript(theirs.output), 'transcript')
  assert.equal(ours.code, theirs.code, 'exit code')
  if (images.length === 2) {
    if (script.image?.endsWith('.raw')) assert.ok(readFileSync(at(images[1]!)).equals(readFileSync(at(images[0]!))), 'the same raw file')
    else {
      const result = await run('qemu-img', ['compare', '-s', '-f', 'qcow2', '-F', 'qcow2', at(images[0]!), at(images[1]!)])
      assert.equal(result.stdout, 'Images are identical.\n', result.stderr)
    }
  }
}

describe('qimg as qemu-io: the same transcripts, exit codes and images as qemu-io', { concurrency: 1 }, () => {
  for (const script of SCRIPTS) {
    for (const stdin of [false, true]) {
      it(`${script.name} (${stdin ? 'standard input' : '-c'})`, async (t) => {
        if (!needTools(t, 'qemu-img', 'qemu-io')) return
        assert.ok(work.ready())
        await compare(script, stdin)
      })
    }
  }
})

/** Command lines qemu-io refuses (or answers without commands); `@` is a copy of plain.qcow2. */
const COMMAND_LINES: string[][] = [
  ['--bogus'], ['-x', '@'], ['-c'], ['-h'], ['a', 'b'], ['-t', 'bogus', '@'], ['-i', 'bogus', '@'], ['-d', 'bogus', '@'],
  ['--image-opts', '-f', 'qcow2', '@'], ['-c', 'length', 'missing.qcow2'], ['-f', 'raw', '-c', 'quit', 'missing.qcow2'],
  ['-f', 'qcow2', '-i', 'native', '-c', 'quit', '@'], ['-f', 'qcow2', '-n', '-i', 'native', '-c', 'length', '@'],
  ['-f', 'qcow2', '-k', '-c', 'quit', '@'], ['-f', 'qcow2', '--cache', 'writeback', '--aio', 'threads', '-U', '-m', '-c', 'read -P 0 0 512', '@'], ['-f', 'qcow2', '-t', 'none', '-r', '-U', '-c', 'read -P 0 0 512', '@'],
  ['--image-opts', '-c', 'length', '-c', 'info', 'driver=qcow2,file.filename=@'], ['-c', 'open -o driver=qcow2 @', '-c', 'length'],
]

describe('qimg as qemu-io: its command line', { concurrency: 1 }, () => {
  for (const line of COMMAND_LINES) {
    it(line.join(' '), async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      assert.ok(work.ready())
      const n = ++copies
      const args = (which: string): string[] => {
        copyFileSync(at('plain.qcow2'), at(`${which}${n}.qcow2`))
        return line.map((arg) => arg.replaceAll('@', `${which}${n}.qcow2`))
      }
      const theirs = await runMerged('qemu-io', args('q'), '')
      const ours = await runMerged(process.execPath, [work.linked('qemu-io'), ...args('o')], '')
      assert.equal(filtered(ours.output).replaceAll(`o${n}.qcow2`, '@'), filtered(theirs.output).replaceAll(`q${n}.qcow2`, '@'))
      assert.equal(ours.code, theirs.code, 'exit code')
    })
  }
})
