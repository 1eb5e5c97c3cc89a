// convert with standard input as the source (raw, VMDK streamOptimized) and VMDK streamOptimized
// to standard output, on a sparse 4 GiB ext4 disk (~200 MB of files) built in the test, through
// real pipes; judged by qemu-img check and compare; peak RSS measured with /usr/bin/time.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { QIMG, needTools, run } from '../helpers/oracle.js'
import { ext4Disk } from '../helpers/ext4-disk.js'

const dir = mkdtempSync(join(tmpdir(), 'qimg-pipein-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const TIMEOUT = 30 * 60 * 1000
/** The bound on memory, whatever the size. */
const MAX_RSS_KIB = 256 * 1024
const SIZE = 4 * 1024 ** 3
const disk = () => ext4Disk(dir, SIZE, '/usr/share/locale')

/** Runs `bash -c` on `pipeline`, where QIMG stands for qimg under /usr/bin/time; qimg's peak RSS in KiB. */
async function pipeline(line: string): Promise<{ code: number; stderr: string; rssKib: number }> {
  const rss = join(dir, 'rss.txt')
  const qimg = `/usr/bin/time -f '%M' -o '${rss}' '${process.execPath}' '${QIMG}'`
  const r = await run('bash', ['-c', `set -o pipefail; ${line.replaceAll('QIMG', qimg)}`])
  return { code: r.code, stderr: r.stderr, rssKib: Number(readFileSync(rss, 'utf8').trim().split('\n').pop()) }
}

async function judge(t: { diagnostic(s: string): void }, name: string, r: { code: number; stderr: string; rssKib: number }, out: string, format: string, source = disk()): Promise<void> {
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stderr, '')
  t.diagnostic(`${name}: peak RSS ${Math.round(r.rssKib / 1024)} MiB, ${statSync(out).size} bytes`)
  assert.ok(r.rssKib <= MAX_RSS_KIB, `peak RSS ${r.rssKib} KiB is above 256 MiB`)
  if (format !== 'raw') {
    const check = await run('qemu-img', ['check', '-f', format, out])
    assert.equal(check.code, 0, check.stdout + check.stderr)
    assert.match(check.stdout, /No errors were found on the image/)
  }
  const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', format, source, out])
  assert.equal(compare.code, 0, compare.stdout + compare.stderr)
  assert.match(compare.stdout, /Images are identical/)
}

test('cat disk | qimg convert -f raw -O qcow2 - out.qcow2: the size from the stream\'s end, sparse', { timeout: TIMEOUT }, async (t) => {
  if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
  const out = join(dir, 'in.qcow2')
  await judge(t, 'raw stdin → qcow2', await pipeline(`cat '${disk()}' | QIMG convert -f raw -O qcow2 - '${out}'`), out, 'qcow2')
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', out])).stdout) as { 'virtual-size': number; 'actual-size': number }
  assert.equal(info['virtual-size'], SIZE)
  assert.ok(info['actual-size'] < SIZE / 8, `not sparse: ${info['actual-size']} bytes on disk`)
  rmSync(out)
})

test('dd if=disk | qimg convert -f raw -O raw - out.raw stays sparse', { timeout: TIMEOUT }, async (t) => {
  if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
  const out = join(dir, 'in.raw')
  await judge(t, 'raw stdin → raw file', await pipeline(`dd if='${disk()}' bs=1M status=none | QIMG convert -f raw -O raw - '${out}'`), out, 'raw')
  assert.equal(statSync(out).size, SIZE)
  assert.ok(statSync(out).blocks * 512 < SIZE / 8, 'the raw output is not sparse')
  rmSync(out)
})

test('cat disk | qimg convert -O raw --size 4G - - | cat (pipe to pipe)', { timeout: TIMEOUT }, async (t) => {
  if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
  const out = join(dir, 'pipe.raw')
  await judge(t, 'raw stdin → stdout', await pipeline(`cat '${disk()}' | QIMG convert -f raw -O raw --size 4G - - | cat > '${out}'`), out, 'raw')
  rmSync(out)
})

test('VMDK streamOptimized to standard output, then read back from standard input', { timeout: TIMEOUT }, async (t) => {
  if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
  const vmdk = join(dir, 'out.vmdk')
  await judge(t, 'raw file → vmdk stdout', await pipeline(`QIMG convert -f raw -O vmdk -o subformat=streamOptimized '${disk()}' - | cat > '${vmdk}'`), vmdk, 'vmdk')
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', vmdk])).stdout) as { 'format-specific': { data: { 'create-type': string } } }
  assert.equal(info['format-specific'].data['create-type'], 'streamOptimized')
  const qcow2 = join(dir, 'from-vmdk.qcow2')
  await judge(t, 'vmdk stdin → qcow2', await pipeline(`cat '${vmdk}' | QIMG convert -f vmdk -O qcow2 - '${qcow2}'`), qcow2, 'qcow2')
  rmSync(qcow2)
  const again = join(dir, 'again.vmdk')
  // Probed (no -f), and to a pipe: the size comes from the VMDK header.
  await judge(t, 'vmdk stdin → vmdk stdout', await pipeline(`cat '${vmdk}' | QIMG convert -O vmdk -o subformat=streamOptimized - - | cat > '${again}'`), again, 'vmdk')
  rmSync(again)
  rmSync(vmdk)
})

test('raw from standard input to VMDK streamOptimized on standard output, --size given', { timeout: TIMEOUT }, async (t) => {
  if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
  const vmdk = join(dir, 'stdin.vmdk')
  await judge(t, 'raw stdin → vmdk stdout', await pipeline(`cat '${disk()}' | QIMG convert -f raw --size 4G -O vmdk -o subformat=streamOptimized - - | cat > '${vmdk}'`), vmdk, 'vmdk')
  rmSync(vmdk)
})

test('a streamOptimized VMDK written by qemu-img, read from standard input', { timeout: TIMEOUT }, async (t) => {
  if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
  const vmdk = join(dir, 'qemu.vmdk')
  assert.equal((await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disk(), vmdk])).code, 0)
  const out = join(dir, 'qemu-vmdk.raw')
  await judge(t, 'qemu vmdk stdin → raw', await pipeline(`cat '${vmdk}' | QIMG convert -f vmdk -O raw - '${out}'`), out, 'raw')
  rmSync(out)
  rmSync(vmdk)
})
