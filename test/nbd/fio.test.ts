// fio's nbd engine (libnbd) against qimg nbd, qemu-nbd 7.2 beside it: random 4 KiB writes at
// queue depth 16 from several connections at once, each block stamped with fio's verify header
// and checked on read-back; then the other server reads what one wrote (verify_only), so a block
// qimg placed wrongly, or read from the wrong cluster, fails fio's check. The image qimg wrote
// passes qemu-img check.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { startServer, type RunningServer } from './serve.js'

const dir = tempDir('qimg-nbd-fio-')
const at = (name: string) => dir.file(name)
const servers: RunningServer[] = []
const TOOLS = ['qemu-img', 'qemu-io', 'qemu-nbd', 'fio']
const JOBS = 4
const JOB_SIZE = '8M'

after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  dir.cleanup()
})

let serial = 0
async function serve(tool: 'qimg' | 'qemu-nbd', image: string, args: string[]): Promise<{ uri: string; server: RunningServer }> {
  const n = ++serial
  const socket = at(`f${n}.sock`)
  const server = await startServer(tool, ['-t', '-k', socket, ...args, image], at(`f${n}.pid`))
  servers.push(server)
  return { uri: `nbd+unix:///?socket=${socket}`, server }
}

/**
 * fio over the nbd engine: JOBS connections, each writing (or, verifyOnly, reading back) its
 * own 8 MiB region in random 4 KiB blocks at depth 16, every block verified by CRC32C.
 */
function fio(uri: string, rw: 'randwrite' | 'write', options: { verifyOnly?: boolean } = {}) {
  return run('fio', [
    '--name=qimg', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', '--iodepth=16', `--numjobs=${JOBS}`,
    `--size=${JOB_SIZE}`, `--offset_increment=${JOB_SIZE}`, '--verify=crc32c', '--verify_fatal=1', '--randrepeat=1', '--randseed=1307', '--verify_state_save=0',
    ...(options.verifyOnly ? ['--verify_only=1'] : []),
  ])
}

async function fioOk(uri: string, rw: 'randwrite' | 'write', options: { verifyOnly?: boolean } = {}): Promise<void> {
  const result = await fio(uri, rw, options)
  assert.equal(result.code, 0, result.stdout + result.stderr)
}

describe('fio nbd engine', () => {
  for (const format of ['qcow2', 'raw']) {
    it(`random writes to a fresh ${format} image over ${JOBS} connections verify, and qemu-nbd reads them back`, async (t) => {
      if (!needTools(t, ...TOOLS)) return
      const image = at(`written-by-qimg.${format}`)
      await runOk('qemu-img', ['create', '-f', format, image, '32M'])
      const ours = await serve('qimg', image, ['-f', format, '-e', String(JOBS)])
      await fioOk(ours.uri, 'randwrite')
      assert.equal(await ours.server.stop(), 0)
      if (format === 'qcow2') {
        const check = await run('qemu-img', ['check', image])
        assert.equal(check.code, 0, check.stdout + check.stderr)
      }
      const theirs = await serve('qemu-nbd', image, ['-r', '-f', format, '-e', String(JOBS)])
      await fioOk(theirs.uri, 'randwrite', { verifyOnly: true })
      await theirs.server.stop()
    })
  }

  it('what fio wrote through qemu-nbd, qimg reads back; a fresh image fails the same check', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const image = at('written-by-qemu.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', image, '32M'])
    const theirs = await serve('qemu-nbd', image, ['-e', String(JOBS)])
    await fioOk(theirs.uri, 'randwrite')
    await theirs.server.stop()
    const ours = await serve('qimg', image, ['-r', '-e', String(JOBS)])
    await fioOk(ours.uri, 'randwrite', { verifyOnly: true })
    assert.equal(await ours.server.stop(), 0)

    // The check can fail: blocks never written have no verify header.
    const fresh = at('fresh.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', fresh, '32M'])
    const empty = await serve('qimg', fresh, ['-r', '-e', String(JOBS)])
    const result = await fio(empty.uri, 'randwrite', { verifyOnly: true })
    assert.notEqual(result.code, 0)
    assert.match(result.stdout + result.stderr, /verify: bad magic header/)
    await empty.server.stop()
  })

  it('sequential writes over a backing chain land in the overlay only', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const base = at('chain-base.qcow2')
    const top = at('chain-top.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', base, '32M'])
    await runOk('qemu-io', ['-c', 'write -P 0x77 0 32M', base])
    await runOk('qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top])
    const ours = await serve('qimg', top, ['-e', String(JOBS)])
    await fioOk(ours.uri, 'write')
    assert.equal(await ours.server.stop(), 0)
    assert.equal((await run('qemu-img', ['check', top])).code, 0)
    await runOk('qemu-io', ['-c', 'read -P 0x77 0 32M', base])
    const theirs = await serve('qemu-nbd', top, ['-r', '-e', String(JOBS)])
    await fioOk(theirs.uri, 'write', { verifyOnly: true })
    await theirs.server.stop()
  })
})
