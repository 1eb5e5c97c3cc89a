// The tar reader on archives built in memory: ustar names with prefix, GNU long names, pax paths,
// and hostile headers (bad checksum, a member past the end, non-octal sizes) as typed errors.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStorage } from '../../src/io/memory.js'
import { isImageError } from '../../src/errors.js'
import { listTar } from '../../src/ova/tar.js'
import { ovfDiskHref } from '../../src/ova/ova.js'

function header(name: string, size: number, type = '0', prefix = ''): Uint8Array {
  const h = new Uint8Array(512)
  const put = (at: number, s: string) => { for (let i = 0; i < s.length; i++) h[at + i] = s.charCodeAt(i) }
  put(0, name)
  put(124, size.toString(8).padStart(11, '0'))
  put(156, type)
  put(257, 'ustar\u000000')
  put(345, prefix)
  put(148, '        ')
  const sum = h.reduce((a, b) => a + b, 0)
  put(148, sum.toString(8).padStart(6, '0') + '\u0000 ')
  return h
}

function archive(parts: Array<{ h: Uint8Array; data: Uint8Array }>): Uint8Array {
  const blocks: Uint8Array[] = []
  for (const p of parts) {
    blocks.push(p.h)
    const padded = new Uint8Array(Math.ceil(p.data.length / 512) * 512)
    padded.set(p.data)
    blocks.push(padded)
  }
  blocks.push(new Uint8Array(1024))
  const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0))
  let at = 0
  for (const b of blocks) { out.set(b, at); at += b.length }
  return out
}

const bytes = (s: string) => new TextEncoder().encode(s)

describe('tar member list', () => {
  it('names (ustar prefix, GNU long name, pax path), offsets and sizes', async () => {
    const long = 'd/'.repeat(80) + 'disk.vmdk'
    const tar = archive([
      { h: header('a.ovf', 3), data: bytes('abc') },
      { h: header('disk.vmdk', 700, '0', 'sub'), data: new Uint8Array(700).fill(7) },
      { h: header('././@LongLink', long.length + 1, 'L'), data: bytes(long + '\0') },
      { h: header('truncated', 1), data: bytes('x') },
      { h: header('PaxHeader', 20, 'x'), data: bytes('20 path=pax.vmdk\n\0\0\0') },
      { h: header('short', 2), data: bytes('yz') },
      { h: header('dir/', 0, '5'), data: new Uint8Array(0) },
    ])
    const members = await listTar(new MemoryStorage(tar, 'm.ova'))
    assert.deepEqual(members.map((m) => [m.name, m.offset, m.size]), [['a.ovf', 512, 3], ['sub/disk.vmdk', 1536, 700], [long, 4096, 1], ['pax.vmdk', 6144, 2]])
  })

  it('hostile headers are typed errors', async () => {
    const good = archive([{ h: header('a', 10), data: bytes('0123456789') }])
    const cases: Array<[string, (b: Uint8Array) => void]> = [
      ['bad header checksum', (b) => { b[0] = 0x41 }],
      ['runs past the end', (b) => { const h = header('a', 1e9); b.set(h, 0) }],
    ]
    for (const [rule, change] of cases) {
      const b = good.slice()
      change(b)
      await assert.rejects(listTar(new MemoryStorage(b, 'h.ova')), (e) => isImageError(e, 'CORRUPT') && (e as Error).message.includes(rule), rule)
    }
  })

  it('the OVF disk reference: first <Disk> fileRef to its <File> href', () => {
    const ovf = '<References><File ovf:id="f0" ovf:href="x.vmdk"/><ns:File ns:href=\'y.vmdk\' ns:id="f1"/></References><Disk ovf:fileRef="f1"/><Disk ovf:fileRef="f0"/>'
    assert.equal(ovfDiskHref(ovf), 'y.vmdk')
    assert.equal(ovfDiskHref('<Envelope/>'), undefined)
  })
})
