// How a server starts and ends: stopping lets requests in flight finish and answer; without -t
// qimg nbd ends with its last client; -s leaves the image as it was; --fork returns once serving.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import { NBD_CMD_FLAG_DF, NBD_CMD_READ } from '../../src/nbd/constants.js'
import { NbdExport } from '../../src/nbd/export.js'
import { encodeRequest } from '../../src/nbd/transmission.js'
import { createQcow2 } from '../../src/node/typed-create.js'
import { NbdServer } from '../../src/node/nbd-server.js'
import { openImage } from '../../src/node/open.js'
import { QIMG, needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { GatedDevice } from './gated.js'
import { startServer } from './serve.js'
import { WireClient, handleNumber, handleOf } from './wire.js'

const dir = tempDir('qimg-nbd-life-')
after(() => dir.cleanup())

describe('server lifecycle', () => {
  it('close() answers the request in flight before the connection goes, then removes the socket', async () => {
    const path = dir.file('gated.qcow2')
    await createQcow2(path, { size: 1 << 20 })
    const opened = await openImage(path, { writable: true })
    const device = new GatedDevice(opened.driver, opened.backing)
    const server = new NbdServer([await NbdExport.create(device)], { persistent: true })
    const socket = dir.file('gated.sock')
    await server.listen({ path: socket })
    const c = await WireClient.connect(socket)
    try {
      await c.open()
      device.gatedOffset = 4096
      device.close_gate()
      const started = new Promise<void>((resolve) => { device.onStart = resolve })
      await c.send(encodeRequest(NBD_CMD_READ, NBD_CMD_FLAG_DF, handleOf(9), 4096, 4096))
      await started
      const closing = server.close()
      device.release()
      const reply = await c.reply()
      assert.ok(reply && reply.header.kind === 'structured' && handleNumber(reply.header.handle) === 9)
      assert.equal(await c.closedByServer(), true)
      await closing
      assert.equal(existsSync(socket), false)
    } finally {
      c.close()
      device.release()
      await server.close()
      await device.close()
    }
  })

  it('without -t, qimg nbd ends when its client leaves; SIGTERM ends a persistent one with exit 0', async (t) => {
    if (!needTools(t, 'qemu-img', 'nbdinfo')) return
    const image = dir.file('a.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', image, '4M'])
    const once = await startServer('qimg', ['-k', dir.file('once.sock'), image], dir.file('once.pid'))
    try {
      assert.equal((await runOk('nbdinfo', ['--size', `nbd+unix:///?socket=${dir.file('once.sock')}`])).trim(), String(4 << 20))
      assert.equal(await once.exited, 0)
    } finally {
      await once.stop('SIGKILL')
    }
    const persistent = await startServer('qimg', ['-t', '-k', dir.file('p.sock'), image], dir.file('p.pid'))
    await runOk('nbdinfo', ['--size', `nbd+unix:///?socket=${dir.file('p.sock')}`])
    assert.equal(await persistent.stop('SIGTERM'), 0)
    assert.equal(existsSync(dir.file('p.sock')), false)
    assert.equal((await run('qemu-img', ['check', image])).code, 0)
  })

  it('-s: writes go to a temporary overlay and the image keeps its bytes', async (t) => {
    if (!needTools(t, 'qemu-img', 'qemu-io')) return
    const image = dir.file('s.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', image, '4M'])
    await runOk('qemu-io', ['-c', 'write -P 0x11 0 64K', image])
    const server = await startServer('qimg', ['-s', '-t', '-k', dir.file('s.sock'), image], dir.file('s.pid'))
    try {
      const uri = `nbd+unix:///?socket=${dir.file('s.sock')}`
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 4K', '-c', 'read -P 0x22 0 4K', '-c', 'read -P 0x11 4K 60K', uri])
    } finally {
      assert.equal(await server.stop(), 0)
    }
    await runOk('qemu-io', ['-c', 'read -P 0x11 0 64K', image])
  })

  it('--fork returns once the server listens; the server writes its pid file', async (t) => {
    if (!needTools(t, 'qemu-img', 'nbdinfo')) return
    const image = dir.file('f.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', image, '1M'])
    const pidFile = dir.file('f.pid')
    const r = await run(process.execPath, [QIMG, 'nbd', '--fork', '-t', '--pid-file', pidFile, '-k', dir.file('f.sock'), image])
    assert.equal(r.code, 0, r.stderr)
    const pid = Number(readFileSync(pidFile, 'utf8'))
    try {
      assert.equal((await runOk('nbdinfo', ['--size', `nbd+unix:///?socket=${dir.file('f.sock')}`])).trim(), String(1 << 20))
    } finally {
      process.kill(pid, 'SIGKILL')
    }
    const failed = await run(process.execPath, [QIMG, 'nbd', '--fork', '-k', dir.file('g.sock'), dir.file('missing.qcow2')])
    assert.equal(failed.code, 1)
    assert.match(failed.stderr, /^qimg: Failed to blk_new_open '.*missing.qcow2': Could not open/)
  })
})
