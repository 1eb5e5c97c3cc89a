// qimg nbd -L (started as qemu-nbd) beside qemu-nbd -L: the same output, messages and exit
// codes byte for byte, listing qemu-nbd's server and qimg's (name, description, meta contexts
// of -A and -B, read-only, multi-conn), over unix sockets and TCP, with TLS (x509, PSK), and
// when nothing listens or the command line is refused.
import assert from 'node:assert/strict'
import { copyFileSync, symlinkSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { QIMG, hasTool, needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { freePort } from '../helpers/port.js'
import { startServer, type RunningServer } from './serve.js'
import { makeTlsMaterial } from './tls-material.js'

const dir = tempDir('qimg-nbd-list-')
const at = (name: string) => dir.file(name)
const link = at('qemu-nbd')
symlinkSync(QIMG, link)
const servers: RunningServer[] = []
const TOOLS = ['qemu-img', 'qemu-nbd', 'openssl']
let ready = false

before(async () => {
  if (!TOOLS.every(hasTool)) return
  await makeTlsMaterial(dir.path)
  await runOk('qemu-img', ['create', '-f', 'qcow2', at('a.qcow2'), '24M'])
  await runOk('qemu-img', ['bitmap', '--add', at('a.qcow2'), 'b0'])
  await runOk('qemu-img', ['bitmap', '--add', at('a.qcow2'), 'b1'])
  for (const copy of ['b', 'c', 'd']) copyFileSync(at('a.qcow2'), at(`${copy}.qcow2`))
  ready = true
})

after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  dir.cleanup()
})

let serial = 0
async function serve(tool: 'qimg' | 'qemu-nbd', args: readonly string[]): Promise<void> {
  servers.push(await startServer(tool, args, at(`s${++serial}.pid`)))
}

/** Runs `args` with qemu-nbd and with qimg as qemu-nbd; asserts the same stdout, stderr and code. */
async function same(args: readonly string[]): Promise<{ stdout: string; code: number }> {
  const theirs = await run('qemu-nbd', args, { cwd: dir.path })
  const ours = await run(link, args, { cwd: dir.path })
  assert.deepEqual({ stdout: ours.stdout, stderr: ours.stderr, code: ours.code }, { stdout: theirs.stdout, stderr: theirs.stderr, code: theirs.code }, args.join(' '))
  return ours
}

describe('qemu-nbd -L', () => {
  it('lists qemu-nbd and qimg serving one image alike: name, description, contexts, flags', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    assert.ok(ready)
    const options = ['-t', '-r', '-x', 'myexp', '-D', 'a description', '-A', '-B', 'b0', '-B', 'b1', '-e', '3', '-f', 'qcow2']
    await serve('qemu-nbd', ['-k', at('theirs.sock'), ...options, at('a.qcow2')])
    await serve('qimg', ['-k', at('ours.sock'), ...options, at('b.qcow2')])
    const theirs = await same(['-L', '-k', at('theirs.sock')])
    const ours = await same(['--list', '--socket', at('ours.sock')])
    assert.equal(ours.stdout, theirs.stdout)
    assert.match(ours.stdout, /^exports available: 1\n export: 'myexp'\n  description: a description\n/)
    assert.match(ours.stdout, /   qemu:allocation-depth\n   qemu:dirty-bitmap:b1\n   qemu:dirty-bitmap:b0\n$/)
  })

  it('over TCP; a listing is no client that ends a server without -t', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const [p1, p2] = [await freePort(), await freePort()]
    await serve('qemu-nbd', ['-b', '127.0.0.1', '-p', String(p1), '-f', 'qcow2', at('c.qcow2')])
    await serve('qimg', ['-b', '127.0.0.1', '-p', String(p2), '-f', 'qcow2', at('d.qcow2')])
    for (let round = 0; round < 2; round++) {
      const theirs = await same(['-L', '-b', '127.0.0.1', '-p', String(p1)])
      const ours = await same(['-L', '-b', '127.0.0.1', '-p', String(p2)])
      assert.equal(ours.stdout, theirs.stdout)
      assert.match(ours.stdout, /^exports available: 1\n export: ''\n  size:  25165824\n/)
    }
  })

  it('TLS: x509 over TCP and a unix socket, PSK; refusals read alike', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const x509Server = ['--object', `tls-creds-x509,id=tls0,endpoint=server,dir=${at('srv')}`, '--tls-creds', 'tls0']
    const x509Client = (d: string) => ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${at(d)}`, '--tls-creds', 'tls0']
    const [p1, p2] = [await freePort(), await freePort()]
    await serve('qemu-nbd', ['-t', '-r', '-b', '127.0.0.1', '-p', String(p1), ...x509Server, at('a.qcow2')])
    await serve('qimg', ['-t', '-r', '-b', '127.0.0.1', '-p', String(p2), ...x509Server, at('b.qcow2')])
    await serve('qimg', ['-t', '-r', '-k', at('x509.sock'), ...x509Server, at('b.qcow2')])
    const pskServer = ['--object', `tls-creds-psk,id=tls0,endpoint=server,dir=${at('psk')}`, '--tls-creds', 'tls0']
    await serve('qimg', ['-t', '-r', '-k', at('psk.sock'), ...pskServer, at('b.qcow2')])
    for (const port of [String(p1), String(p2)]) {
      const listed = await same(['-L', '-b', '127.0.0.1', '-p', port, ...x509Client('cli')])
      assert.equal(listed.code, 0)
      assert.equal((await same(['-L', '-b', 'localhost', '-p', port, ...x509Client('cli')])).code, 0)
      assert.equal((await same(['-L', '-b', '127.0.0.1', '-p', port])).code, 1)
      assert.equal((await same(['-L', '-b', '127.0.0.1', '-p', port, ...x509Client('stranger')])).code, 1)
    }
    assert.equal((await same(['-L', '-k', at('x509.sock'), '--tls-hostname', 'localhost', ...x509Client('cli')])).code, 0)
    assert.equal((await same(['-L', '-k', at('x509.sock'), ...x509Client('cli')])).code, 1)
    const psk = (extra: string) => ['-L', '-k', at('psk.sock'), '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${at('psk')}${extra}`, '--tls-creds', 'tls0']
    assert.equal((await same(psk(',username=alice'))).code, 0)
    assert.equal((await same(psk(''))).code, 1)
  })

  it('nothing listening, and refused command lines', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const cases = [
      ['-L', '-k', at('nobody.sock')],
      ['-L', '-b', '127.0.0.1', '-p', String(await freePort())],
      ['-L', '-k', at('nobody.sock'), '-r', '-t', '-e', '2', '-s', '-l', 'snapshot.name=x'],
      ['-L', at('a.qcow2')],
      ['-L', '-x', 'name'],
      ['-L', '-D', 'text'],
      ['-L', '-l', 'snap'],
      ['-L', '-A'],
      ['-L', '--cache=none'],
      ['-L', '--fork'],
      ['-L', '--tls-hostname', 'h'],
      ['-L', '--tls-authz', 'z', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${at('psk')},username=alice`, '--tls-creds', 'tls0'],
      ['-L', '-k', at('nobody.sock'), '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${at('psk')}`, '--tls-creds', 'tls0'],
      ['-L', '--object', `tls-creds-x509,id=tls0,endpoint=server,dir=${at('srv')}`, '--tls-creds', 'tls0'],
      ['-L', '--tls-creds', 'nope'],
    ]
    for (const args of cases) assert.equal((await same(args)).code, 1)
  })
})
