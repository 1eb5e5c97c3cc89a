// convert's pipe forms on the command line: the impossible ones refused with their message
// (before a byte is written, no hang), and --progress=json lines parsed and monotonic.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { QIMG, needTools, run } from '../helpers/oracle.js'

const dir = mkdtempSync(join(tmpdir(), 'qimg-pipecli-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const disk = join(dir, 'disk.raw')
const bytes = new Uint8Array(24 * 1024 * 1024)
for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) % 251
writeFileSync(disk, bytes)

const qimg = (args: string[], input?: string, env?: Record<string, string>) => run(process.execPath, [QIMG, ...args], { ...(input === undefined ? {} : { input }), ...(env ? { env } : {}) })

const REFUSED: { args: string[]; message: RegExp }[] = [
  { args: ['convert', '-f', 'raw', '-O', 'qcow2', '-', '-'], message: /from standard input to standard output is impossible: a qcow2 stream puts its tables before the data/ },
  { args: ['convert', '-O', 'vpc', disk, '-'], message: /only -o subformat=fixed can be written to a pipe/ },
  { args: ['convert', '-O', 'vmdk', disk, '-'], message: /only -o subformat=streamOptimized can be written to a pipe/ },
  { args: ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized,zeroed_grain=on', disk, '-'], message: /option 'zeroed_grain' is not possible on a pipe/ },
  { args: ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', '-', '-'], message: /from standard input to standard output: give the virtual size with --size/ },
  { args: ['convert', '-f', 'qcow2', '-O', 'raw', '-', join(dir, 'never.raw')], message: /convert -f qcow2 from standard input: only raw and vmdk \(streamOptimized\) can be read from a pipe/ },
  { args: ['convert', '-f', 'raw', '-O', 'vdi', '-', join(dir, 'never.vdi')], message: /convert -O vdi from standard input: give the virtual size with --size/ },
  { args: ['convert', '-f', 'raw', '-c', '-O', 'qcow2', '-', join(dir, 'never.qcow2')], message: /convert -c from standard input to a file is not supported/ },
  { args: ['convert', '-f', 'vmdk', '-O', 'raw', '-', join(dir, 'never.raw')], message: /standard input: the stream ends at byte 0 inside the VMDK header/ },
  { args: ['convert', '--size', '1M', '-O', 'raw', disk, '-'], message: /only a source read from standard input takes a size/ },
  { args: ['convert', '-O', 'qcow2', '-o', 'preallocation=metadata', disk, '-'], message: /option 'preallocation' is not possible on a pipe/ },
  { args: ['convert', '-O', 'vdi', disk, '-'], message: /only raw, qcow2, vpc \(subformat=fixed\) and vmdk \(subformat=streamOptimized\) can be written to a pipe/ },
  { args: ['convert', '-n', '-O', 'raw', disk, '-'], message: /standard output is not an existing image/ },
]

for (const r of REFUSED) {
  test(`qimg ${r.args.join(' ')} is refused`, { timeout: 120_000 }, async () => {
    const result = await qimg(r.args, '')
    assert.equal(result.code, 1)
    assert.equal(result.stdout, '')
    assert.match(result.stderr, r.message)
  })
}

test('qcow2 from a pipe to a pipe is refused with standard input left open (no hang)', { timeout: 120_000 }, async () => {
  const result = await qimg(['convert', '-f', 'raw', '-O', 'qcow2', '-', '-'])
  assert.equal(result.code, 1)
  assert.match(result.stderr, /from standard input to standard output is impossible/)
})

/** JSON progress lines: parsed, each phase's bytes and the overall percent never going back. */
function checkJsonProgress(stderr: string, phases: string[]): void {
  const lines = stderr.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { phase: string; done: number; total: number; percent: number; elapsed: number })
  assert.ok(lines.length >= phases.length, stderr)
  let last = lines[0]!
  for (const line of lines) {
    assert.equal(typeof line.elapsed, 'number')
    assert.ok(line.percent >= last.percent, `percent went back: ${JSON.stringify(last)} then ${JSON.stringify(line)}`)
    if (line.phase === last.phase) assert.ok(line.done >= last.done, `done went back in ${line.phase}`)
    assert.ok(line.elapsed >= last.elapsed)
    last = line
  }
  assert.deepEqual([...new Set(lines.map((l) => l.phase))], phases)
  assert.equal(last.percent, 100)
}

test('convert -O qcow2 … - --progress=json: JSON lines on stderr, monotonic', { timeout: 120_000 }, async (t) => {
  if (!needTools(t, 'qemu-img')) return
  const r = await run('bash', ['-c', `'${process.execPath}' '${QIMG}' convert --progress=json -f raw -O qcow2 '${disk}' - > '${dir}/out.qcow2'`])
  assert.equal(r.code, 0, r.stderr)
  checkJsonProgress(r.stderr, ['scan', 'write'])
  const compare = await run('qemu-img', ['compare', disk, join(dir, 'out.qcow2')])
  assert.equal(compare.code, 0, compare.stdout)
})

test('a stream longer than --size is refused, and nothing past it is written', { timeout: 120_000 }, async () => {
  const r = await run('bash', ['-c', `cat '${disk}' | '${process.execPath}' '${QIMG}' convert -f raw -O raw --size 1M - - | wc -c`])
  assert.match(r.stderr, /standard input: the stream is longer than --size 1048576/)
  assert.equal(r.stdout.trim(), '0')
})

test('QIMG_PROGRESS=json convert -O raw … -', { timeout: 120_000 }, async () => {
  const r = await run('bash', ['-c', `'${process.execPath}' '${QIMG}' convert -f raw -O raw '${disk}' - | cmp - '${disk}'`], { env: { QIMG_PROGRESS: 'json' } })
  assert.equal(r.code, 0, r.stderr)
  checkJsonProgress(r.stderr, ['write'])
})
