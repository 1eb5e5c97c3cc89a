// The NBD codec and the pure parts of the server: bytes as proto.md lays them out, context
// selection as qemu-nbd answers it, extents merged and capped as QEMU does.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { NBD_META_ID_DIRTY_BITMAP, NBD_STATE_DIRTY } from '../../src/nbd/constants.js'
import { ExtentList, bitmapExtents } from '../../src/nbd/block-status.js'
import {
  decodeGreeting, decodeOptionHeader, decodeOptionReplyHeader, encodeExportNameReply, encodeGoPayload, encodeGreeting, encodeInfoBlockSize,
  encodeInfoExport, encodeMetaPayload, encodeOption, encodeOptionReplyHeader,
} from '../../src/nbd/handshake.js'
import { selectMetaContexts } from '../../src/nbd/meta-context.js'
import {
  decodeBlockStatus, decodeError, decodeReplyStart, decodeRequest, encodeChunkBlockStatus, encodeChunkData, encodeChunkDone, encodeChunkError,
  encodeChunkHole, encodeRequest, encodeSimpleReply,
} from '../../src/nbd/transmission.js'
import { DirtyBitmap } from '../../src/qcow2/bitmap-data.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const handle = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])

describe('handshake messages', () => {
  it('greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES', () => {
    assert.equal(hex(encodeGreeting()), Buffer.from('NBDMAGICIHAVEOPT').toString('hex') + '0003')
    assert.deepEqual(decodeGreeting(encodeGreeting()), { handshakeFlags: 3 })
    assert.equal(decodeGreeting(new Uint8Array(18)), undefined)
  })

  it('options and option replies', () => {
    const o = encodeOption(7, new Uint8Array([9, 9]))
    assert.equal(hex(o), Buffer.from('IHAVEOPT').toString('hex') + '00000007' + '00000002' + '0909')
    assert.deepEqual(decodeOptionHeader(o), { magicOk: true, option: 7, length: 2 })
    assert.equal(decodeOptionHeader(new Uint8Array(16)).magicOk, false)
    const r = encodeOptionReplyHeader(7, 0x8000_0006, 12)
    assert.equal(hex(r), '0003e889045565a9' + '00000007' + '80000006' + '0000000c')
    assert.deepEqual(decodeOptionReplyHeader(r), { magicOk: true, option: 7, type: 0x8000_0006, length: 12 })
  })

  it('info payloads and the EXPORT_NAME reply', () => {
    assert.equal(hex(encodeInfoExport(2 ** 40 + 5, 0x1234)), '0000' + '0000010000000005' + '1234')
    assert.equal(hex(encodeInfoBlockSize(1, 4096, 32 << 20)), '0003' + '00000001' + '00001000' + '02000000')
    assert.equal(encodeExportNameReply(512, 1, true).length, 10)
    const padded = encodeExportNameReply(512, 1, false)
    assert.equal(padded.length, 134)
    assert.ok(padded.subarray(10).every((b) => b === 0))
    assert.equal(hex(encodeGoPayload('ab', [1, 3])), '00000002' + '6162' + '0002' + '0001' + '0003')
    assert.equal(hex(encodeMetaPayload('', ['x'])), '00000000' + '00000001' + '00000001' + '78')
  })
})

describe('transmission messages', () => {
  it('requests round-trip; an offset above 2^53 decodes past any export', () => {
    const r = encodeRequest(1, 0x11, handle, 2 ** 40 + 512, 4096)
    assert.equal(hex(r), '25609513' + '0011' + '0001' + hex(handle) + '0000010000000200' + '00001000')
    const d = decodeRequest(r)
    assert.deepEqual({ ...d, handle: hex(d.handle) }, { magicOk: true, flags: 0x11, type: 1, handle: hex(handle), offset: 2 ** 40 + 512, length: 4096 })
    const huge = decodeRequest(Buffer.from('25609513' + '0000' + '0000' + hex(handle) + 'ffffffffffffffff' + '00000200', 'hex'))
    assert.ok(huge.offset > 2 ** 63)
    assert.equal(decodeRequest(new Uint8Array(28)).magicOk, false)
  })

  it('simple replies and structured chunks', () => {
    assert.equal(hex(encodeSimpleReply(22, handle)), '67446698' + '00000016' + hex(handle))
    assert.deepEqual(decodeReplyStart(encodeSimpleReply(5, handle)), { kind: 'simple', error: 5, handle })
    assert.equal(hex(encodeChunkDone(handle)), '668e33ef' + '0001' + '0000' + hex(handle) + '00000000')
    assert.equal(hex(encodeChunkData(handle, 4096, 512, false)), '668e33ef' + '0000' + '0001' + hex(handle) + '00000208' + '0000000000001000')
    assert.equal(hex(encodeChunkHole(handle, 0, 65536, true)), '668e33ef' + '0001' + '0002' + hex(handle) + '0000000c' + '0000000000000000' + '00010000')
    const status = encodeChunkBlockStatus(handle, 1, [{ length: 512, flags: 3 }, { length: 1024, flags: 0 }], true)
    assert.equal(hex(status), '668e33ef' + '0001' + '0005' + hex(handle) + '00000014' + '00000001' + '00000200' + '00000003' + '00000400' + '00000000')
    assert.deepEqual(decodeBlockStatus(status.subarray(20)), { contextId: 1, extents: [{ length: 512, flags: 3 }, { length: 1024, flags: 0 }] })
    const error = encodeChunkError(handle, 22, new TextEncoder().encode('bad'))
    assert.equal(hex(error), '668e33ef' + '0001' + '8001' + hex(handle) + '00000009' + '00000016' + '0003' + '626164')
    assert.deepEqual(decodeError(error.subarray(20)), { error: 22, message: new TextEncoder().encode('bad') })
  })
})

describe('meta context selection (nbd_negotiate_meta_queries)', () => {
  const offer = { allocationDepth: true, bitmaps: ['b0', 'b1'] }
  const names = (queries: string[], list: boolean, o = offer) => selectMetaContexts(o, queries, list).contexts.map((c) => `${c.id}:${c.name}`)

  it('LIST without queries, or with empty leaves, names everything; SET only exact names', () => {
    const all = ['0:base:allocation', '1:qemu:allocation-depth', `${NBD_META_ID_DIRTY_BITMAP}:qemu:dirty-bitmap:b0`, '3:qemu:dirty-bitmap:b1']
    assert.deepEqual(names([], true), all)
    assert.deepEqual(names(['base:', 'qemu:'], true), all)
    assert.deepEqual(names(['base:', 'qemu:', 'qemu:dirty-bitmap:'], false), [])
    assert.deepEqual(names(['qemu:dirty-bitmap:b1', 'base:allocation'], false), ['0:base:allocation', '3:qemu:dirty-bitmap:b1'])
    assert.deepEqual(names(['qemu:dirty-bitmap:'], true), ['2:qemu:dirty-bitmap:b0', '3:qemu:dirty-bitmap:b1'])
  })

  it('what the export lacks is never selected', () => {
    assert.deepEqual(names(['qemu:allocation-depth', 'qemu:dirty-bitmap:zz', 'other:x', 'base:other'], false, { allocationDepth: false, bitmaps: [] }), [])
    assert.deepEqual(names([], true, { allocationDepth: false, bitmaps: [] }), ['0:base:allocation'])
  })
})

describe('extents', () => {
  it('equal flags merge, up to u32, and the list stops at its cap', () => {
    const list = new ExtentList(2)
    assert.ok(list.add(512, 1))
    assert.ok(list.add(512, 1))
    assert.ok(list.add(0, 2))
    assert.ok(list.add(0xffff_ffff, 2))
    assert.equal(list.add(1, 2), false, 'a sum past u32 needs a new extent, and the cap is reached')
    assert.deepEqual(list.extents, [{ length: 1024, flags: 1 }, { length: 0xffff_ffff, flags: 2 }])
  })

  it('a dirty bitmap gives DIRTY runs at its granularity, clean past its end', () => {
    const bitmap = new DirtyBitmap('b', 65536, 1 << 20, true)
    bitmap.setDirty(65536, 3 * 65536)
    bitmap.setDirty(10 * 65536 + 100, 1)
    assert.deepEqual(bitmapExtents(bitmap, 0, 1 << 20, 100), [
      { length: 65536, flags: 0 }, { length: 3 * 65536, flags: NBD_STATE_DIRTY }, { length: 6 * 65536, flags: 0 },
      { length: 65536, flags: NBD_STATE_DIRTY }, { length: 5 * 65536, flags: 0 },
    ])
    assert.deepEqual(bitmapExtents(bitmap, 100000, 50000, 1), [{ length: 50000, flags: NBD_STATE_DIRTY }])
    assert.deepEqual(bitmapExtents(bitmap, 0, 1 << 20, 1), [{ length: 65536, flags: 0 }])
  })
})
