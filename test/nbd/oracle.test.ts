// qimg nbd beside qemu-nbd 7.2 with real clients: nbdinfo sees the same export (JSON, maps,
// list), nbdcopy copies out and in (4 connections), qemu-io over nbd+unix applies a random
// script with the same result as on a raw file, and flushed data survives kill -9.
import assert from 'node:assert/strict'
import { copyFileSync, existsSync, readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { prng } from '../helpers/prng.js'
import { hasTool, needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { startServer, type RunningServer } from './serve.js'

const MiB = 1024 * 1024
const dir = tempDir('qimg-nbd-oracle-')
const at = (name: string) => dir.file(name)
const servers: RunningServer[] = []
const TOOLS = ['qemu-img', 'qemu-io', 'qemu-nbd', 'nbdinfo', 'nbdcopy']
let ready = false

before(async () => {
  if (!TOOLS.every(hasTool)) return
  // A chain with data in both layers, zero clusters, a discarded range, and a shorter backing file.
  await runOk('qemu-img', ['create', '-f', 'qcow2', at('base.qcow2'), '32M'])
  await runOk('qemu-io', ['-c', 'write -P 0x11 0 4M', '-c', 'write -P 0x22 10M 1M', at('base.qcow2')])
  await runOk('qemu-img', ['create', '-f', 'qcow2', '-b', at('base.qcow2'), '-F', 'qcow2', at('top.qcow2'), '48M'])
  await runOk('qemu-io', ['-c', 'write -P 0x33 1M 1M', '-c', 'write -z 10M 512K', '-c', 'write -P 0x44 40M 64K', '-c', 'discard 2M 1M', at('top.qcow2')])
  await runOk('qemu-img', ['create', '-f', 'raw', at('sparse.raw'), '16M'])
  await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 4M 1M', at('sparse.raw')])
  await runOk('qemu-img', ['create', '-f', 'qcow2', at('bitmap.qcow2'), '8M'])
  await runOk('qemu-img', ['bitmap', '--add', at('bitmap.qcow2'), 'b0'])
  await runOk('qemu-io', ['-c', 'write -P 0x66 1M 192K', '-c', 'write 5M 4K', at('bitmap.qcow2')])
  ready = true
})

after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  dir.cleanup()
})

let serial = 0
/** Starts `tool` serving `image` with `args` on a fresh socket; the socket path and the server. */
async function serve(tool: 'qimg' | 'qemu-nbd', image: string, args: string[]): Promise<{ socket: string; server: RunningServer }> {
  const n = ++serial
  const socket = at(`s${n}.sock`)
  const server = await startServer(tool, ['-k', socket, ...args, image], at(`p${n}.pid`))
  servers.push(server)
  return { socket, server }
}

const uri = (socket: string, name = '') => `nbd+unix:///${name}?socket=${socket}`

/** nbdinfo's output with the socket path made neutral. */
async function nbdinfo(args: string[], socket: string, name = ''): Promise<string> {
  const out = await runOk('nbdinfo', [...args, uri(socket, name)])
  return out.replaceAll(socket, 'SOCKET')
}

describe('nbdinfo sees what qemu-nbd shows', () => {
  const cases: { what: string; image: string; args: string[]; name?: string; copy?: boolean }[] = [
    { what: 'a read-only chain with -A, a name and a description', image: 'top.qcow2', args: ['-r', '-A', '-x', 'disk', '-D', 'the disk', '-f', 'qcow2'], name: 'disk' },
    { what: 'a writable qcow2 shared by 4 clients', image: 'base.qcow2', args: ['-e', '4'], copy: true },
    { what: 'a sparse raw file, read-only', image: 'sparse.raw', args: ['-r', '-f', 'raw', '-A'] },
    { what: 'a persistent dirty bitmap (-B) beside allocation depth', image: 'bitmap.qcow2', args: ['-r', '-B', 'b0', '-A'] },
  ]
  for (const c of cases) {
    it(c.what, async (t) => {
      if (!needTools(t, ...TOOLS)) return
      assert.ok(ready)
      const images = c.copy ? ['q', 'r'].map((s) => { const p = at(`${s}-${serial}-${c.image}`); copyFileSync(at(c.image), p); return p }) : [at(c.image), at(c.image)]
      const ours = await serve('qimg', images[0]!, [...c.args, '-t'])
      const theirs = await serve('qemu-nbd', images[1]!, [...c.args, '-t'])
      const views: [string, string[]][] = [['json', ['--json']], ['map', ['--map']], ['list', ['--list', '--json']]]
      if (c.args.includes('-A')) views.push(['depth', ['--map=qemu:allocation-depth']])
      const bitmap = c.args[c.args.indexOf('-B') + 1]
      if (c.args.includes('-B')) views.push(['bitmap', [`--map=qemu:dirty-bitmap:${bitmap}`]])
      for (const [view, args] of views) {
        assert.equal(await nbdinfo(args, ours.socket, c.name), await nbdinfo(args, theirs.socket, c.name), `nbdinfo ${view}`)
      }
      assert.equal(await ours.server.stop(), 0)
      await theirs.server.stop()
    })
  }
})

describe('nbdcopy', () => {
  it('copies out of an export what qemu-img convert reads, and into a writable one over 4 connections', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    assert.ok(ready)
    const out = await serve('qimg', at('top.qcow2'), ['-r', '-t', '-e', '0'])
    await runOk('nbdcopy', [uri(out.socket), at('copied.raw')])
    await runOk('qemu-img', ['convert', '-O', 'raw', at('top.qcow2'), at('converted.raw')])
    assert.ok(readFileSync(at('copied.raw')).equals(readFileSync(at('converted.raw'))))
    await out.server.stop()

    await runOk('qemu-img', ['create', '-f', 'qcow2', at('target.qcow2'), '48M'])
    const into = await serve('qimg', at('target.qcow2'), ['-t', '-e', '4'])
    assert.match(await nbdinfo(['--can', 'multi-conn'], into.socket).then(() => 'yes', () => 'no'), /yes/)
    await runOk('nbdcopy', ['--connections=4', '--flush', at('converted.raw'), uri(into.socket)])
    assert.equal(await into.server.stop(), 0)
    assert.equal((await run('qemu-img', ['check', at('target.qcow2')])).code, 0)
    assert.equal((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', at('converted.raw'), at('target.qcow2')])).code, 0)
  })
})

/** A random qemu-io script of writes, zero writes, cluster-aligned discards and flushes. */
function script(seed: number, size: number, count: number): string[] {
  const random = prng(seed)
  const pick = (n: number) => Math.floor(random() * n)
  const ops: string[] = []
  for (let i = 0; i < count; i++) {
    const kind = pick(10)
    if (kind < 5) {
      const length = (1 + pick(128)) * 512
      ops.push(`write -P ${1 + pick(254)} ${pick((size - length) / 512) * 512} ${length}`)
    } else if (kind < 7) {
      const length = (1 + pick(256)) * 512
      ops.push(`write -z ${pick((size - length) / 512) * 512} ${length}`)
    } else if (kind < 9) {
      const clusters = 1 + pick(4)
      ops.push(`discard ${pick(size / 65536 - clusters) * 65536} ${clusters * 65536}`)
    } else {
      ops.push('flush')
    }
  }
  return ops
}

describe('qemu-io over nbd+unix', () => {
  it('a random script gives the content it gives on a raw file, and qemu-img check is clean', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const size = 16 * MiB
    await runOk('qemu-img', ['create', '-f', 'qcow2', at('script.qcow2'), String(size)])
    await runOk('qemu-img', ['create', '-f', 'raw', at('script.raw'), String(size)])
    const ops = script(1307, size, 300)
    const served = await serve('qimg', at('script.qcow2'), ['-t', '--discard=unmap', '-x', 'x'])
    for (let i = 0; i < ops.length; i += 50) {
      const chunk = ops.slice(i, i + 50).flatMap((op) => ['-c', op])
      await runOk('qemu-io', ['-f', 'raw', ...chunk, uri(served.socket, 'x')])
      await runOk('qemu-io', ['-f', 'raw', ...chunk, at('script.raw')])
    }
    assert.equal(await served.server.stop(), 0)
    const check = await run('qemu-img', ['check', at('script.qcow2')])
    assert.equal(check.code, 0, check.stdout + check.stderr)
    const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', at('script.raw'), at('script.qcow2')])
    assert.equal(compare.code, 0, compare.stdout)
  })

  it('qemu-img convert reads an export as it reads the image', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const served = await serve('qimg', at('top.qcow2'), ['-r', '-t'])
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', uri(served.socket), at('via-nbd.qcow2')])
    await served.server.stop()
    assert.equal((await run('qemu-img', ['compare', at('top.qcow2'), at('via-nbd.qcow2')])).code, 0)
  })
})

describe('durability', () => {
  it('flushed writes survive kill -9 of the server; the image checks clean but for leaks', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    await runOk('qemu-img', ['create', '-f', 'qcow2', at('durable.qcow2'), '16M'])
    const served = await serve('qimg', at('durable.qcow2'), ['-t'])
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 3M', '-c', 'write -P 0xa5 8M 64K', '-c', 'flush', uri(served.socket)])
    assert.equal(await served.server.stop('SIGKILL'), 'SIGKILL')
    const check = await run('qemu-img', ['check', at('durable.qcow2')])
    assert.ok(check.code === 0 || check.code === 3, check.stdout + check.stderr)
    assert.doesNotMatch(check.stdout, /ERROR/)
    await runOk('qemu-io', ['-c', 'read -P 0x5a 0 3M', '-c', 'read -P 0xa5 8M 64K', '-c', 'read -P 0 3M 5M', at('durable.qcow2')])
  })

  it('a socket left by a server killed with -9 is taken over by the next one, as qemu-nbd does', async (t) => {
    if (!needTools(t, ...TOOLS)) return
    const socket = at('stale.sock')
    for (const tool of ['qimg', 'qemu-nbd', 'qimg'] as const) {
      const server = await startServer(tool, ['-t', '-r', '-k', socket, at('sparse.raw'), '-f', 'raw'], at(`stale-${++serial}.pid`))
      servers.push(server)
      assert.equal((await runOk('nbdinfo', ['--size', uri(socket)])).trim(), String(16 * MiB))
      assert.equal(await server.stop('SIGKILL'), 'SIGKILL')
      assert.ok(existsSync(socket))
    }
  })
})
