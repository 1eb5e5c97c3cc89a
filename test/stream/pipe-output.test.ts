// convert … - (standard output) for each streamed format on a 4 GiB ext4 disk, written through
// a real pipe; judged by qemu-img check and compare; peak RSS measured with /usr/bin/time.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { QIMG, needTools, run } from '../helpers/oracle.js'
import { ext4Disk } from '../helpers/ext4-disk.js'

const dir = mkdtempSync(join(tmpdir(), 'qimg-pipe-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const TIMEOUT = 30 * 60 * 1000
/** The bound on memory, whatever the size. */
const MAX_RSS_KIB = 256 * 1024

/** Runs `qimg ARGS` with its standard output piped through cat into `out`; its peak RSS in KiB. */
async function toPipe(args: string[], out: string): Promise<{ code: number; stderr: string; rssKib: number }> {
  const rss = join(dir, 'rss.txt')
  const quoted = args.map((a) => `'${a}'`).join(' ')
  const r = await run('bash', ['-c', `set -o pipefail; /usr/bin/time -f '%M' -o '${rss}' '${process.execPath}' '${QIMG}' ${quoted} | cat > '${out}'`])
  return { code: r.code, stderr: r.stderr, rssKib: Number(readFileSync(rss, 'utf8').trim().split('\n').pop()) }
}

const FORMS: { name: string; args: string[]; format: string; check: boolean }[] = [
  { name: 'raw', args: ['-O', 'raw'], format: 'raw', check: false },
  { name: 'qcow2', args: ['-O', 'qcow2'], format: 'qcow2', check: true },
  { name: 'qcow2 -c zlib', args: ['-c', '-O', 'qcow2'], format: 'qcow2', check: true },
  { name: 'qcow2 -c zstd, 16k clusters', args: ['-c', '-O', 'qcow2', '-o', 'compression_type=zstd,cluster_size=16k'], format: 'qcow2', check: true },
  { name: 'qcow2 2M clusters, compat 0.10', args: ['-O', 'qcow2', '-o', 'cluster_size=2M,compat=0.10'], format: 'qcow2', check: true },
  { name: 'vpc fixed', args: ['-O', 'vpc', '-o', 'subformat=fixed'], format: 'vpc', check: false },
]

for (const form of FORMS) {
  test(`convert -f raw ${form.args.join(' ')} disk - (4 GiB ext4, through a pipe)`, { timeout: TIMEOUT }, async (t) => {
    if (!needTools(t, 'qemu-img', 'mkfs.ext4', '/usr/bin/time')) return
    const disk = ext4Disk(dir)
    const out = join(dir, 'out.img')
    const r = await toPipe(['convert', '-f', 'raw', ...form.args, disk, '-'], out)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '')
    t.diagnostic(`${form.name}: peak RSS ${Math.round(r.rssKib / 1024)} MiB, ${statSync(out).size} bytes`)
    assert.ok(r.rssKib <= MAX_RSS_KIB, `peak RSS ${r.rssKib} KiB is above 256 MiB`)
    if (form.check) {
      const check = await run('qemu-img', ['check', '-f', form.format, out])
      assert.equal(check.code, 0, check.stdout + check.stderr)
      assert.match(check.stdout, /No errors were found on the image/)
    }
    const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', form.format, disk, out])
    assert.equal(compare.code, 0, compare.stdout + compare.stderr)
    assert.match(compare.stdout, /Images are identical/)
    rmSync(out)
  })
}
