// qimg as an NBD client over TLS, qemu-nbd 7.2 the TLS server: the nbd driver's tls-creds (and
// tls-hostname) name a tls-creds-x509 or tls-creds-psk --object, as qemu-img takes them. qimg
// info/map print what qemu-img prints, convert reads the export, io writes into it; refusals
// (no TLS, wrong host name, unknown CA) read as qemu-img's. Then qemu-img as the TLS client of
// qimg nbd sees what it sees from qemu-nbd.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { QIMG, hasTool, needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { startServer, type RunningServer } from './serve.js'
import { makeTlsMaterial, type TlsMaterial } from './tls-material.js'

const dir = tempDir('qimg-nbd-tls-client-')
const at = (name: string) => dir.file(name)
const servers: RunningServer[] = []
const TOOLS = ['qemu-img', 'qemu-io', 'qemu-nbd', 'openssl']
let tls: TlsMaterial | undefined

before(async () => {
  if (!TOOLS.every(hasTool)) return
  tls = await makeTlsMaterial(dir.path)
  await runOk('qemu-img', ['create', '-f', 'qcow2', at('a.qcow2'), '16M'])
  await runOk('qemu-io', ['-c', 'write -P 0x42 1M 128K', '-c', 'write -P 0x43 8M 64K', at('a.qcow2')])
})

after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  dir.cleanup()
})

let serial = 0
async function serve(tool: 'qimg' | 'qemu-nbd', image: string, object: string, args: string[] = []): Promise<string> {
  const socket = at(`c${++serial}.sock`)
  servers.push(await startServer(tool, ['-t', '-k', socket, ...args, '--object', object, '--tls-creds', 'tls0', image], at(`c${serial}.pid`)))
  return socket
}

interface Kind {
  what: string
  server: () => string
  client: () => string
  /** The nbd node's options for an export on `socket`. */
  node: (socket: string) => string
}
const kinds: Kind[] = [
  {
    what: 'x509 (client certificate, tls-hostname)',
    server: () => `tls-creds-x509,id=tls0,endpoint=server,dir=${tls!.serverDir}`,
    client: () => `tls-creds-x509,id=tls0,endpoint=client,dir=${tls!.clientDir}`,
    node: (s) => `driver=nbd,server.type=unix,server.path=${s},tls-creds=tls0,tls-hostname=localhost`,
  },
  {
    what: 'PSK',
    server: () => `tls-creds-psk,id=tls0,endpoint=server,dir=${tls!.pskDir}`,
    client: () => `tls-creds-psk,id=tls0,endpoint=client,dir=${tls!.pskDir},username=alice`,
    node: (s) => `driver=nbd,server.type=unix,server.path=${s},tls-creds=tls0`,
  },
]

/** The nbd node as the file of a raw node (qemu-io's usual --image-opts shape). */
const asRawFile = (node: string) => `driver=raw,${node.split(',').map((kv) => `file.${kv}`).join(',')}`

/** The same command through qimg and qemu-img: both results, the program name made neutral. */
async function both(args: string[]): Promise<{ ours: { code: number; stdout: string; stderr: string }; theirs: { code: number; stdout: string; stderr: string } }> {
  const ours = await run(process.execPath, [QIMG, ...args])
  const theirs = await run('qemu-img', args)
  return { ours: { ...ours, stderr: ours.stderr.replace(/^qimg:/gm, 'qemu-img:') }, theirs }
}

describe('qimg as a TLS client of qemu-nbd', () => {
  for (const kind of kinds) {
    it(`${kind.what}: info and map as qemu-img's, convert reads, io writes`, async (t) => {
      if (!needTools(t, ...TOOLS)) return
      const image = at(`w${serial}.qcow2`)
      await runOk('cp', [at('a.qcow2'), image])
      const socket = await serve('qemu-nbd', image, kind.server())
      const object = ['--object', kind.client()]
      for (const command of [['info'], ['map', '--output=json'], ['map']]) {
        const { ours, theirs } = await both([...command, ...object, '--image-opts', kind.node(socket)])
        assert.equal(ours.code, 0, ours.stderr)
        assert.equal(ours.stdout, theirs.stdout, command.join(' '))
      }
      const copy = at(`copy${serial}.qcow2`)
      await runOk(process.execPath, [QIMG, 'convert', ...object, '-O', 'qcow2', '--image-opts', kind.node(socket), copy])
      assert.equal((await run('qemu-img', ['compare', '-U', '-F', 'qcow2', copy, image])).code, 0)
      await runOk(process.execPath, [QIMG, 'io', ...object, '--image-opts', '-c', 'write -P 0x5a 4M 192K', '-c', 'flush', asRawFile(kind.node(socket))])
      await runOk('qemu-io', ['-r', '-U', '-c', 'read -P 0x5a 4M 192K', '-c', 'read -P 0x42 1M 128K', image])
    })
  }

  it('refusals read as qemu-img\'s: no TLS, another host name, an unknown CA, no such object', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const socket = await serve('qemu-nbd', at('a.qcow2'), kinds[0]!.server(), ['-r'])
    const node = kinds[0]!.node(socket)
    const cases = [
      [`nbd+unix:///?socket=${socket}`],
      ['--object', kinds[0]!.client(), '--image-opts', node.replace('tls-hostname=localhost', 'tls-hostname=elsewhere')],
      ['--object', kinds[0]!.client(), '--image-opts', node.replace(',tls-hostname=localhost', '')],
      ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${tls!.strangerDir}`, '--image-opts', node],
      ['--object', kinds[0]!.client(), '--image-opts', node.replace('tls-creds=tls0', 'tls-creds=nope')],
      ['--object', kinds[0]!.server(), '--image-opts', node],
    ]
    for (const args of cases) {
      const { ours, theirs } = await both(['info', ...args])
      assert.equal(theirs.code, 1)
      assert.equal(ours.code, 1)
      assert.equal(ours.stderr, theirs.stderr, args.join(' '))
    }
  })
})

describe('qemu-img as a TLS client of qimg nbd', () => {
  for (const kind of kinds) {
    it(`${kind.what}: what qemu-img sees from qimg nbd is what it sees from qemu-nbd`, async (t) => {
      if (!needTools(t, ...TOOLS)) return
      const ours = await serve('qimg', at('a.qcow2'), kind.server(), ['-r'])
      const theirs = await serve('qemu-nbd', at('a.qcow2'), kind.server(), ['-r'])
      for (const command of [['info'], ['map', '--output=json']]) {
        const args = (s: string) => [...command, '--object', kind.client(), '--image-opts', kind.node(s)]
        const a = await runOk('qemu-img', args(ours))
        const b = await runOk('qemu-img', args(theirs))
        assert.equal(a.replaceAll(ours, 'S'), b.replaceAll(theirs, 'S'), command.join(' '))
      }
      const copy = at(`from-qimg${serial}.raw`)
      await runOk('qemu-img', ['convert', '--object', kind.client(), '-O', 'raw', '--image-opts', kind.node(ours), copy])
      assert.equal((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', copy, at('a.qcow2')])).code, 0)
    })
  }
})
