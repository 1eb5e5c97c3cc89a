// The NBD server against a raw client: handshake replies, transmission commands, and every
// hostile case the server must answer with the protocol's error or a disconnect while it keeps
// serving other clients and the image stays intact.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { viewOf } from '../../src/binary/bytes.js'
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_SEND_CACHE, NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_INFO_BLOCK_SIZE,
  NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK,
  NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT, NBD_REP_SERVER,
  NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_OPT_STARTTLS, NBD_STATE_HOLE, NBD_STATE_ZERO,
} from '../../src/nbd/constants.js'
import { NbdExport } from '../../src/nbd/export.js'
import { encodeGoPayload, encodeMetaPayload, encodeOption, encodeString, lengthPrefixed } from '../../src/nbd/handshake.js'
import { decodeBlockStatus, decodeError, decodeOffset, decodeOffsetHole, encodeRequest } from '../../src/nbd/transmission.js'
import { createQcow2 } from '../../src/node/typed-create.js'
import { NbdServer } from '../../src/node/nbd-server.js'
import { openImage } from '../../src/node/open.js'
import { tempDir } from '../helpers/oracle.js'
import { GatedDevice } from './gated.js'
import { WireClient, handleNumber, handleOf } from './wire.js'

const MiB = 1024 * 1024
const SIZE = 8 * MiB
const text = (b: Uint8Array) => new TextDecoder().decode(b)

const dir = tempDir('qimg-nbd-server-')
let device: GatedDevice
let server: NbdServer
const socket = dir.file('s.sock')
const clients: WireClient[] = []
async function client(): Promise<WireClient> {
  const c = await WireClient.connect(socket)
  clients.push(c)
  return c
}

before(async () => {
  const path = dir.file('a.qcow2')
  await createQcow2(path, { size: SIZE })
  const opened = await openImage(path, { writable: true })
  device = new GatedDevice(opened.driver, opened.backing)
  await device.write(MiB, new Uint8Array(64 * 1024).fill(0xab))
  const exp = await NbdExport.create(device, { name: 'disk', description: 'a test disk', maxConnections: 0, allocationDepth: true })
  server = new NbdServer([exp], { maxConnections: 0, persistent: true, handshakeTimeoutMs: 300, inFlightBytes: 32 * MiB })
  await server.listen({ path: socket })
})

after(async () => {
  for (const c of clients) c.close()
  device.release()
  await server.close()
  await device.close()
  dir.cleanup()
})

/** A request and its replies up to the DONE chunk (or the one simple reply). */
async function request(c: WireClient, type: number, offset: number, length: number, flags = 0, payload?: Uint8Array, handle = 7) {
  await c.send(encodeRequest(type, flags, handleOf(handle), offset, length), ...(payload ? [payload] : []))
  const replies = []
  for (;;) {
    const r = await c.reply()
    assert.ok(r, 'connection closed before the reply')
    replies.push(r)
    if (r.header.kind !== 'structured' || r.header.flags & NBD_REPLY_FLAG_DONE) return replies
  }
}

describe('handshake', () => {
  it('greets with fixed newstyle and no zeroes, lists the export with its description', async () => {
    const c = await client()
    assert.equal(await c.greeting(), 3)
    const replies = await c.option(NBD_OPT_LIST)
    assert.deepEqual(replies.map((r) => r.header.type), [NBD_REP_SERVER, NBD_REP_ACK])
    const p = replies[0]!.payload
    assert.equal(viewOf(p).getUint32(0), 4)
    assert.equal(text(p.subarray(4, 8)), 'disk')
    assert.equal(text(p.subarray(8)), 'a test disk')
  })

  it('OPT_GO sends block sizes and the export; DF only after structured replies; multi-conn with -e 0', async () => {
    const c = await client()
    const { size, flags } = await c.open('disk')
    assert.equal(size, SIZE)
    const expected = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN |
      NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_SEND_DF
    assert.equal(flags, expected)
    const plain = await client()
    assert.equal((await plain.open('disk', [], false)).flags, expected & ~NBD_FLAG_SEND_DF)
  })

  it('OPT_INFO answers block sizes (minimum 1 for an unencrypted image) and stays in negotiation', async () => {
    const c = await client()
    await c.greeting()
    const replies = await c.option(NBD_OPT_INFO, encodeGoPayload('disk', [NBD_INFO_BLOCK_SIZE]))
    const block = replies.find((r) => r.header.type === NBD_REP_INFO && viewOf(r.payload).getUint16(0) === NBD_INFO_BLOCK_SIZE)!
    const v = viewOf(block.payload)
    assert.deepEqual([v.getUint32(2), v.getUint32(6), v.getUint32(10)], [1, 4096, 32 * MiB])
    assert.equal(replies[replies.length - 1]!.header.type, NBD_REP_ACK)
    assert.equal((await c.option(NBD_OPT_LIST))[1]!.header.type, NBD_REP_ACK)
  })

  it('an unknown export, an unknown option, STARTTLS without TLS: errors, and the session goes on', async () => {
    const c = await client()
    await c.greeting()
    const unknown = await c.option(NBD_OPT_GO, encodeGoPayload('nope', []))
    assert.equal(unknown[0]!.header.type, NBD_REP_ERR_UNKNOWN)
    assert.equal(text(unknown[0]!.payload), "export 'nope' not present")
    const unsup = await c.option(99, new Uint8Array(1000))
    assert.equal(unsup[0]!.header.type, NBD_REP_ERR_UNSUP)
    assert.equal(text(unsup[0]!.payload), 'Unsupported option 99 (<unknown>)')
    const tls = await c.option(NBD_OPT_STARTTLS)
    assert.equal(tls[0]!.header.type, NBD_REP_ERR_POLICY)
    assert.equal(text(tls[0]!.payload), 'TLS not configured')
    const again = await c.option(NBD_OPT_STRUCTURED_REPLY)
    assert.equal(again[0]!.header.type, NBD_REP_ACK)
    const twice = await c.option(NBD_OPT_STRUCTURED_REPLY)
    assert.equal(text(twice[0]!.payload), 'structured reply already negotiated')
    assert.equal((await c.open('disk').catch(() => undefined)) === undefined, true, 'greeting already done: open() is not for this client')
  })

  it('names too long, lengths that disagree, payloads where none belong: NBD_REP_ERR_INVALID', async () => {
    const c = await client()
    await c.greeting()
    const long = new Uint8Array(4 + 5000 + 2)
    viewOf(long).setUint32(0, 5000)
    const r1 = await c.option(NBD_OPT_GO, long)
    assert.equal(r1[0]!.header.type, NBD_REP_ERR_INVALID)
    assert.equal(text(r1[0]!.payload), 'Invalid name length: 5000')
    const lying = new Uint8Array(10)
    viewOf(lying).setUint32(0, 100)
    const r2 = await c.option(NBD_OPT_GO, lying)
    assert.equal(text(r2[0]!.payload), 'Inconsistent lengths in option go')
    const r3 = await c.option(NBD_OPT_LIST, new Uint8Array(3))
    assert.equal(text(r3[0]!.payload), "option 'list' has unexpected length")
    const nul = lengthPrefixed(new Uint8Array([0x64, 0, 0x6b]))
    const r4 = await c.option(NBD_OPT_GO, new Uint8Array([...nul, 0, 0]))
    assert.equal(text(r4[0]!.payload), 'Unexpected embedded NUL in option go')
    const r5 = await c.option(NBD_OPT_SET_META_CONTEXT, encodeMetaPayload('disk', ['base:allocation']))
    assert.equal(text(r5[0]!.payload), "request option 'set meta context' when structured reply is not negotiated")
    // Still in negotiation after all of it.
    assert.equal((await c.option(NBD_OPT_LIST))[1]!.header.type, NBD_REP_ACK)
  })

  it('LIST_META_CONTEXT: everything without queries, ids 0, unknown names skipped', async () => {
    const c = await client()
    await c.greeting()
    const all = await c.option(NBD_OPT_LIST_META_CONTEXT, encodeMetaPayload('disk', []))
    assert.deepEqual(all.filter((r) => r.header.type === NBD_REP_META_CONTEXT).map((r) => [viewOf(r.payload).getUint32(0), text(r.payload.subarray(4))]),
      [[0, 'base:allocation'], [0, 'qemu:allocation-depth']])
    const some = await c.option(NBD_OPT_LIST_META_CONTEXT, encodeMetaPayload('disk', ['qemu:', 'nope:x', 'qemu:dirty-bitmap:b']))
    assert.deepEqual(some.filter((r) => r.header.type === NBD_REP_META_CONTEXT).map((r) => text(r.payload.subarray(4))), ['qemu:allocation-depth'])
  })

  for (const [what, bytes] of [
    ['unknown client flags', () => { const b = new Uint8Array(4); viewOf(b).setUint32(0, 0x80); return b }],
    ['an option without the magic', () => new Uint8Array([0, 0, 0, 3, ...new Uint8Array(16)])],
    ['an option longer than 32 MiB', () => { const o = encodeOption(NBD_OPT_LIST); viewOf(o).setUint32(12, 64 * MiB); return new Uint8Array([0, 0, 0, 3, ...o]) }],
    ['EXPORT_NAME of an unknown export', () => new Uint8Array([0, 0, 0, 3, ...encodeOption(1, encodeString('nope'))])],
    ['EXPORT_NAME longer than 4096', () => { const o = encodeOption(1); viewOf(o).setUint32(12, 5000); return new Uint8Array([0, 0, 0, 3, ...o]) }],
    ['garbage', () => new Uint8Array(64).fill(0xff)],
  ] as const) {
    it(`hangs up on ${what}, and serves the next client`, async () => {
      const c = await client()
      assert.ok(await c.read(18))
      await c.send(bytes())
      assert.equal(await c.closedByServer(), true)
      const next = await client()
      assert.equal((await next.open('disk')).size, SIZE)
    })
  }

  it('cuts a handshake that does not finish, and keeps serving', async () => {
    const idle = await Promise.all(Array.from({ length: 20 }, () => client()))
    const closed = await Promise.all(idle.map((c) => c.closedByServer()))
    assert.ok(closed.every(Boolean))
    const next = await client()
    assert.equal((await next.open('disk')).size, SIZE)
  })
})

describe('transmission', () => {
  it('writes, reads back (structured, with DF, simple), flushes; zeros come as hole chunks', async () => {
    const c = await client()
    await c.open('disk')
    const data = new Uint8Array(8192).map((_, i) => (i * 7) & 0xff)
    const w = await request(c, NBD_CMD_WRITE, 3 * MiB, data.length, NBD_CMD_FLAG_FUA, data)
    assert.deepEqual(w.map((r) => r.header.kind === 'simple' && r.header.error), [0])
    const r = await request(c, NBD_CMD_READ, 3 * MiB - 4096, 4096 + 8192)
    assert.deepEqual(r.map((x) => x.header.kind === 'structured' && x.header.type), [NBD_REPLY_TYPE_OFFSET_HOLE, NBD_REPLY_TYPE_OFFSET_DATA])
    assert.deepEqual(decodeOffsetHole(r[0]!.payload), { offset: 3 * MiB - 4096, length: 4096 })
    assert.equal(decodeOffset(r[1]!.payload), 3 * MiB)
    assert.deepEqual(r[1]!.payload.subarray(8), data)
    const df = await request(c, NBD_CMD_READ, 3 * MiB - 4096, 4096 + 8192, NBD_CMD_FLAG_DF)
    assert.equal(df.length, 1)
    assert.deepEqual(df[0]!.payload.subarray(8 + 4096), data)
    assert.deepEqual(df[0]!.payload.subarray(8, 8 + 4096), new Uint8Array(4096))
    const f = await request(c, NBD_CMD_FLUSH, 0, 0)
    assert.equal(f[0]!.header.kind === 'simple' && f[0]!.header.error, 0)
    const plain = await client()
    await plain.open('disk', [], false)
    await plain.send(encodeRequest(NBD_CMD_READ, 0, handleOf(1), 3 * MiB, 8192))
    const simple = await plain.reply()
    assert.equal(simple!.header.kind, 'simple')
    assert.deepEqual(await plain.read(8192), data)
  })

  it('block status: base:allocation and qemu:allocation-depth in one reply, REQ_ONE gives one extent', async () => {
    const c = await client()
    await c.open('disk', ['base:allocation', 'qemu:allocation-depth'])
    const r = await request(c, NBD_CMD_BLOCK_STATUS, 0, 2 * MiB)
    assert.equal(r.length, 2)
    const base = decodeBlockStatus(r[0]!.payload)
    const depth = decodeBlockStatus(r[1]!.payload)
    assert.equal(base.contextId, 0)
    assert.deepEqual(base.extents, [{ length: MiB, flags: NBD_STATE_HOLE | NBD_STATE_ZERO }, { length: 64 * 1024, flags: 0 }, { length: MiB - 64 * 1024, flags: NBD_STATE_HOLE | NBD_STATE_ZERO }])
    assert.equal(depth.contextId, 1)
    assert.deepEqual(depth.extents, [{ length: MiB, flags: 0 }, { length: 64 * 1024, flags: 1 }, { length: MiB - 64 * 1024, flags: 0 }])
    const one = await request(c, NBD_CMD_BLOCK_STATUS, 0, 2 * MiB, 8)
    assert.deepEqual(decodeBlockStatus(one[0]!.payload).extents, [{ length: MiB, flags: 3 }])
  })

  it('requests past the end, bad flags, unknown commands, zero-length status: EINVAL with QEMU\'s messages', async () => {
    const c = await client()
    await c.open('disk', [])
    const cases: [number, number, number, number, string][] = [
      [NBD_CMD_READ, SIZE - 512, 1024, 0, `operation past EOF; From: ${SIZE - 512}, Len: 1024, Size: ${SIZE}`],
      [NBD_CMD_READ, 2 ** 60, 512, 0, `operation past EOF; From: ${2n ** 60n}, Len: 512, Size: ${SIZE}`],
      [NBD_CMD_TRIM, 0, 512, 0x40, 'unsupported flags for command trim (got 0x40)'],
      [99, 0, 0, 0, 'invalid request type (99) received'],
      [NBD_CMD_BLOCK_STATUS, 0, 512, 0, 'CMD_BLOCK_STATUS not negotiated'],
      [NBD_CMD_READ, 0, 64 * MiB, 0, `len (${64 * MiB} ) is larger than max len (${32 * MiB})`],
    ]
    for (const [type, offset, length, flags, message] of cases) {
      const r = await request(c, type, offset, length, flags)
      assert.equal(r.length, 1)
      const h = r[0]!.header
      assert.ok(h.kind === 'structured' && h.type === NBD_REPLY_TYPE_ERROR)
      const e = decodeError(r[0]!.payload)
      assert.equal(e.error, NBD_EINVAL)
      assert.equal(text(e.message), message)
    }
    const wz = await request(c, NBD_CMD_WRITE_ZEROES, SIZE, 512)
    assert.equal(text(decodeError(wz[0]!.payload).message), `operation past EOF; From: ${SIZE}, Len: 512, Size: ${SIZE}`)
  })

  it('an oversized write is refused and ends the connection (its payload cannot be skipped)', async () => {
    const c = await client()
    await c.open('disk', [])
    const r = await request(c, NBD_CMD_WRITE, 0, 40 * MiB)
    assert.equal(decodeError(r[0]!.payload).error, NBD_EINVAL)
    assert.equal(await c.closedByServer(), true)
  })

  it('a write abandoned mid-payload changes nothing; a bad request magic disconnects', async () => {
    const c = await client()
    await c.open('disk', [])
    await c.send(encodeRequest(NBD_CMD_WRITE, 0, handleOf(1), 5 * MiB, 65536), new Uint8Array(1000).fill(0xee))
    c.close()
    const d = await client()
    await d.open('disk', [])
    const r = await request(d, NBD_CMD_READ, 5 * MiB, 65536, NBD_CMD_FLAG_DF)
    assert.deepEqual(r[0]!.payload.subarray(8), new Uint8Array(65536))
    const bad = encodeRequest(NBD_CMD_READ, 0, handleOf(1), 0, 512)
    bad[0] = 0
    await d.send(bad)
    assert.equal(await d.closedByServer(), true)
  })

  it('runs requests concurrently and answers out of order', async () => {
    const c = await client()
    await c.open('disk', [])
    device.gatedOffset = MiB
    device.close_gate()
    await c.send(encodeRequest(NBD_CMD_READ, NBD_CMD_FLAG_DF, handleOf(1), MiB, 4096), encodeRequest(NBD_CMD_READ, NBD_CMD_FLAG_DF, handleOf(2), 2 * MiB, 4096))
    const first = await c.reply()
    assert.equal(handleNumber(first!.header.kind === 'structured' ? first!.header.handle : new Uint8Array(8)), 2)
    device.release()
    const second = await c.reply()
    assert.ok(second!.header.kind === 'structured')
    assert.equal(handleNumber(second!.header.handle), 1)
    assert.deepEqual(second!.payload.subarray(8), new Uint8Array(4096).fill(0xab))
    device.gatedOffset = -1
  })

  it('holds at most 16 requests in flight per connection; the rest wait for a slot', async () => {
    const c = await client()
    await c.open('disk', [])
    device.started = []
    device.gatedOffset = -2
    device.close_gate()
    const sixteen = new Promise<void>((resolve) => { device.onStart = () => { if (device.started.length === 16) resolve() } })
    await c.send(...Array.from({ length: 20 }, (_, i) => encodeRequest(NBD_CMD_READ, NBD_CMD_FLAG_DF, handleOf(i), i * 4096, 4096)))
    await sixteen
    // Give the server every chance to start more: a request beyond the bound would start now.
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(device.started.length, 16)
    device.onStart = undefined
    device.release()
    const handles = new Set<number>()
    for (let i = 0; i < 20; i++) {
      const r = await c.reply()
      assert.ok(r && r.header.kind === 'structured')
      handles.add(handleNumber(r.header.handle))
    }
    assert.equal(handles.size, 20)
    assert.equal(device.started.length, 20)
    device.gatedOffset = -1
  })

  it('holds at most the in-flight byte budget of read buffers; the rest wait', async () => {
    const c = await client()
    await c.open('disk', [])
    device.started = []
    device.gatedOffset = -2
    device.close_gate()
    const four = new Promise<void>((resolve) => { device.onStart = () => { if (device.started.length === 4) resolve() } })
    await c.send(...Array.from({ length: 6 }, (_, i) => encodeRequest(NBD_CMD_READ, NBD_CMD_FLAG_DF, handleOf(i), 0, SIZE)))
    await four
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(device.started.length, 4, '4 reads of 8 MiB fill the 32 MiB budget')
    device.onStart = undefined
    device.release()
    for (let i = 0; i < 6; i++) {
      const r = await c.reply()
      assert.ok(r && r.header.kind === 'structured' && r.payload.length === 8 + SIZE)
    }
    device.gatedOffset = -1
  })

  it('NBD_CMD_DISC finishes what runs, then hangs up without a reply', async () => {
    const c = await client()
    await c.open('disk', [])
    await c.send(encodeRequest(NBD_CMD_READ, NBD_CMD_FLAG_DF, handleOf(5), 0, 512), encodeRequest(NBD_CMD_DISC, 0, handleOf(6), 0, 0))
    const r = await c.reply()
    assert.ok(r && r.header.kind === 'structured' && handleNumber(r.header.handle) === 5)
    assert.equal(await c.closedByServer(), true)
  })
})
