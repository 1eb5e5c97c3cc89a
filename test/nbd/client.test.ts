// NBD exports as storage: qimg's commands on nbd+unix:// and nbd:// names print what qemu-img
// prints for the same export (qemu-nbd serving, so the client is checked on its own), convert
// copies out of and into exports, and the file name forms parse as QEMU's nbd driver does.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { NbdExport } from '../../src/nbd/export.js'
import { nbdAddress, nbdFilenameOptions } from '../../src/node/nbd-options.js'
import { NbdServer } from '../../src/node/nbd-server.js'
import { openImage } from '../../src/node/open.js'
import { hasTool, needTools, qimg, qimgInProcess, run, runOk, tempDir } from '../helpers/oracle.js'
import { startServer, type RunningServer } from './serve.js'

const dir = tempDir('qimg-nbd-client-')
const at = (name: string) => dir.file(name)
const servers: RunningServer[] = []
let readOnly = ''
const TOOLS = ['qemu-img', 'qemu-io', 'qemu-nbd']

before(async () => {
  if (!TOOLS.every(hasTool)) return
  await runOk('qemu-img', ['create', '-f', 'qcow2', at('src.qcow2'), '24M'])
  await runOk('qemu-io', ['-c', 'write -P 0x61 0 1M', '-c', 'write -P 0x62 5M 192K', '-c', 'write -z 8M 1M', '-c', 'write -P 0x63 20M 4K', at('src.qcow2')])
  const s = await startServer('qemu-nbd', ['-t', '-r', '-x', 'src', '-k', at('ro.sock'), at('src.qcow2')], at('ro.pid'))
  servers.push(s)
  readOnly = `nbd+unix:///src?socket=${at('ro.sock')}`
})

after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  dir.cleanup()
})

describe('an export as an image', () => {
  for (const args of [['info'], ['info', '--output=json'], ['map', '--output=json'], ['map']]) {
    it(`qimg ${args.join(' ')} prints what qemu-img prints`, async (t) => {
      if (!needTools(t, ...TOOLS)) return
      const theirs = await run('qemu-img', [...args, readOnly])
      const ours = await qimg([...args, readOnly])
      assert.equal(ours.stdout, theirs.stdout)
      assert.equal(ours.code, theirs.code)
    })
  }

  it('convert reads an export into qcow2; compare finds it equal to the image', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const r = await qimg(['convert', '-O', 'qcow2', readOnly, at('copy.qcow2')])
    assert.equal(r.code, 0, r.stderr)
    assert.equal((await run('qemu-img', ['compare', at('src.qcow2'), at('copy.qcow2')])).code, 0)
    // Holes stay holes: the copy allocates only what the source has.
    const dataBytes = async (image: string) => (JSON.parse(await runOk('qemu-img', ['map', '--output=json', image])) as { data: boolean; length: number }[])
      .filter((e) => e.data).reduce((n, e) => n + e.length, 0)
    assert.equal(await dataBytes(at('copy.qcow2')), await dataBytes(at('src.qcow2')))
    const c = await qimg(['compare', '-F', 'raw', at('src.qcow2'), readOnly])
    assert.equal(c.stdout, 'Images are identical.\n')
  })

  it('convert -n writes into a writable export', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    await runOk('qemu-img', ['create', '-f', 'qcow2', at('dest.qcow2'), '24M'])
    const s = await startServer('qemu-nbd', ['-t', '-k', at('rw.sock'), at('dest.qcow2')], at('rw.pid'))
    servers.push(s)
    const r = await qimg(['convert', '-n', '-O', 'raw', at('src.qcow2'), `nbd+unix:///?socket=${at('rw.sock')}`])
    assert.equal(r.code, 0, r.stderr)
    await s.stop()
    assert.equal((await run('qemu-img', ['check', at('dest.qcow2')])).code, 0)
    assert.equal((await run('qemu-img', ['compare', at('src.qcow2'), at('dest.qcow2')])).code, 0)
  })

  it('a missing export and a missing socket fail with qemu-img\'s messages', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    for (const name of [`nbd+unix:///nope?socket=${at('ro.sock')}`, `nbd+unix:///x?socket=${at('none.sock')}`, 'nbd+unix:///x', 'nbd://']) {
      const theirs = await run('qemu-img', ['info', name])
      const ours = await qimg(['info', name])
      assert.equal(ours.stderr.replace(/^qimg:/, 'qemu-img:'), theirs.stderr, name)
      assert.equal(ours.code, 1)
    }
  })

  it('nbd://HOST:PORT/NAME over TCP to qimg\'s own server (an ephemeral port on loopback)', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const device = await openImage(at('src.qcow2'))
    const server = new NbdServer([await NbdExport.create(device, { name: 'tcp' })], { persistent: true, maxConnections: 0 })
    try {
      const address = await server.listen({ host: '127.0.0.1', port: 0 })
      assert.ok('port' in address)
      const url = `nbd://127.0.0.1:${address.port}/tcp`
      const ours = await qimgInProcess(['map', '--output=json', url])
      const theirs = await run('qemu-img', ['map', '--output=json', url])
      assert.equal(ours.stdout, theirs.stdout)
      assert.match(ours.stdout, /"data": true/)
    } finally {
      await server.close()
      await device.close()
    }
  })
})


describe('NBD file names (block/nbd.c)', () => {
  const parse = (name: string) => Object.fromEntries(nbdFilenameOptions(name))
  it('URIs and the legacy forms', () => {
    assert.deepEqual(parse('nbd://h.example:1234/disk'), { driver: 'nbd', export: 'disk', 'server.type': 'inet', 'server.host': 'h.example', 'server.port': '1234' })
    assert.deepEqual(parse('nbd+tcp://[::1]/'), { driver: 'nbd', 'server.type': 'inet', 'server.host': '::1', 'server.port': '10809' })
    assert.deepEqual(parse('nbd+unix:///e?socket=/run/s'), { driver: 'nbd', export: 'e', 'server.type': 'unix', 'server.path': '/run/s' })
    assert.deepEqual(parse('nbd:unix:/run/s:exportname=e'), { driver: 'nbd', export: 'e', 'server.type': 'unix', 'server.path': '/run/s' })
    assert.deepEqual(parse('nbd:localhost:10810'), { driver: 'nbd', 'server.type': 'inet', 'server.host': 'localhost', 'server.port': '10810' })
    assert.deepEqual(nbdAddress(nbdFilenameOptions('nbd+unix:///?socket=/s')), { type: 'unix', path: '/s', exportName: '' })
  })
  it('what QEMU refuses', () => {
    for (const bad of ['nbd+unix:///e', 'nbd+unix://host/e?socket=/s', 'nbd://h/e?socket=/s', 'nbd:///e', 'nbd+unix:///e?socket=/a&x=1']) {
      assert.throws(() => nbdFilenameOptions(bad), { code: 'INVALID_ARGUMENT', message: 'No valid URL specified' }, bad)
    }
  })
})
