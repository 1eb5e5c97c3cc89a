// qimg nbd with TLS beside qemu-nbd: x509 certificates (a CA, server and client certificates
// made here with openssl, verify-peer on) and PSK; nbdinfo sees the same export over TLS from
// both, a client without TLS is refused by both alike, and credential errors read the same.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { QIMG, hasTool, needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { startServer, type RunningServer } from './serve.js'
import { makeTlsMaterial } from './tls-material.js'

const dir = tempDir('qimg-nbd-tls-')
const at = (name: string) => dir.file(name)
const servers: RunningServer[] = []
const TOOLS = ['qemu-img', 'qemu-nbd', 'nbdinfo', 'openssl']
let ready = false

before(async () => {
  if (!TOOLS.every(hasTool)) return
  await makeTlsMaterial(dir.path)
  await runOk('qemu-img', ['create', '-f', 'qcow2', at('a.qcow2'), '16M'])
  await runOk('qemu-io', ['-c', 'write -P 0x42 1M 128K', at('a.qcow2')])
  ready = true
})

after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  dir.cleanup()
})

let serial = 0
async function serve(tool: 'qimg' | 'qemu-nbd', object: string): Promise<string> {
  const socket = at(`t${++serial}.sock`)
  servers.push(await startServer(tool, ['-t', '-r', '-k', socket, '--object', object, '--tls-creds', 'tls0', at('a.qcow2')], at(`t${serial}.pid`)))
  return socket
}

const kinds = [
  { what: 'x509 certificates, client verified', object: `tls-creds-x509,id=tls0,endpoint=server,dir=${at('srv')}`, uri: (s: string) => `nbds+unix:///?socket=${s}&tls-certificates=${at('cli')}` },
  { what: 'a pre-shared key', object: `tls-creds-psk,id=tls0,endpoint=server,dir=${at('psk')}`, uri: (s: string) => `nbds+unix://alice@/?socket=${s}&tls-psk-file=${at('psk/keys.psk')}` },
]

describe('TLS', () => {
  for (const kind of kinds) {
    it(`${kind.what}: nbdinfo over TLS as from qemu-nbd; no TLS, no export`, async (t) => {
      if (!needTools(t, ...TOOLS)) return
      assert.ok(ready)
      const ours = await serve('qimg', kind.object)
      const theirs = await serve('qemu-nbd', kind.object)
      for (const args of [['--json'], ['--map']]) {
        const a = (await runOk('nbdinfo', [...args, kind.uri(ours)])).replaceAll(ours, 'S')
        const b = (await runOk('nbdinfo', [...args, kind.uri(theirs)])).replaceAll(theirs, 'S')
        assert.equal(a, b)
      }
      assert.match(await runOk('nbdinfo', ['--json', kind.uri(ours)]), /"TLS": true/)
      const plainOurs = await run('nbdinfo', ['--size', `nbd+unix:///?socket=${ours}`])
      const plainTheirs = await run('nbdinfo', ['--size', `nbd+unix:///?socket=${theirs}`])
      assert.notEqual(plainOurs.code, 0)
      assert.equal(plainOurs.stderr, plainTheirs.stderr)
    })
  }

  it('credential errors read as qemu-nbd\'s', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const cases = [
      ['--object', `tls-creds-x509,id=tls0,endpoint=server,dir=${at('none')}`, '--tls-creds', 'tls0'],
      ['--object', `tls-creds-x509,id=tls0,dir=${at('srv')}`, '--tls-creds', 'tls0'],
      ['--tls-creds', 'nope'],
      ['--object', `tls-creds-psk,id=tls0,endpoint=server,dir=${at('srv')}`, '--tls-creds', 'tls0'],
    ]
    for (const args of cases) {
      const full = ['-k', at('never.sock'), ...args, at('a.qcow2')]
      const theirs = await run('qemu-nbd', full)
      const ours = await run(process.execPath, [QIMG, 'nbd', ...full])
      assert.equal(ours.stderr.replace(/^qimg:/, 'qemu-nbd:'), theirs.stderr, args.join(' '))
      assert.equal(ours.code, 1)
    }
  })
})
