// Differencing VHDX (which qemu-img can neither make nor open): built from the spec over a
// parent qimg made; qimg reads present blocks from the child, partially present blocks by their
// sector bitmap, the rest from the parent; libvhdi's vhdiinfo reads the same disk type, size
// and parent name; a write makes a partial block whole with the parent's sectors copied in.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { openChain } from '../../src/format/chain.js'
import { MemoryStorage } from '../../src/io/memory.js'
import { memoryHost } from '../helpers/memory-host.js'
import { hasTool, run, tempDir } from '../helpers/oracle.js'
import { MiB, buildDifferencingVhdx, newVhdx } from './vhdx-helpers.js'

const dir = tempDir('qimg-vhdx-diff-')
after(() => dir.cleanup())

async function fixture(): Promise<{ parent: Uint8Array; child: Uint8Array; expected: Uint8Array }> {
  const size = 4 * MiB
  const parent = (await newVhdx(size, { block_size: '1M' }, 'parent.vhdx', [[0, size, 0x11]])).bytes().slice()
  const dynamic = (await newVhdx(size, { block_size: '1M' }, 'child.vhdx', [[MiB, MiB, 0x22], [2 * MiB, MiB, 0x33]])).bytes().slice()
  // Block 2 partially present: sectors 0-7 and 100-299 are the child's.
  const child = buildDifferencingVhdx(dynamic, 'parent.vhdx', 2, [[0, 8], [100, 200]])
  const expected = new Uint8Array(size).fill(0x11)
  expected.fill(0x22, MiB, 2 * MiB)
  expected.fill(0x33, 2 * MiB, 2 * MiB + 8 * 512)
  expected.fill(0x33, 2 * MiB + 100 * 512, 2 * MiB + 300 * 512)
  return { parent, child, expected }
}

describe('differencing vhdx', () => {
  it('reads through the parent, by sector bitmap; writes make blocks whole', async () => {
    const { parent, child, expected } = await fixture()
    const open = (writable: boolean, bytes = child) => openChain(new MemoryStorage(bytes.slice(), 'child.vhdx'), { format: 'vhdx', writable, host: memoryHost({ 'parent.vhdx': parent }) })
    const device = await open(false)
    assert.equal(device.backing?.driver.format, 'vhdx')
    assert.ok(Buffer.compare(await device.read(0, 4 * MiB), expected) === 0, 'differencing read differs')
    await device.close()
    const storage = new MemoryStorage(child.slice(), 'child.vhdx')
    const w = await openChain(storage, { format: 'vhdx', writable: true, host: memoryHost({ 'parent.vhdx': parent }) })
    await w.write(2 * MiB + 50 * 512, new Uint8Array(512).fill(0x44))
    await w.write(3 * MiB + 4096, new Uint8Array(100).fill(0x55))
    expected.fill(0x44, 2 * MiB + 50 * 512, 2 * MiB + 51 * 512)
    expected.fill(0x55, 3 * MiB + 4096, 3 * MiB + 4196)
    await w.close()
    const again = await open(false, storage.bytes())
    assert.ok(Buffer.compare(await again.read(0, 4 * MiB), expected) === 0, 'differencing write lost parent sectors')
    await again.close()
  })

  it('libvhdi reads the same disk', async (t) => {
    if (!hasTool('vhdiinfo')) {
      if (process.env['CI']) assert.fail('vhdiinfo missing (libvhdi-utils)')
      t.skip('vhdiinfo not installed')
      return
    }
    const { parent, child } = await fixture()
    writeFileSync(dir.file('parent.vhdx'), parent)
    writeFileSync(dir.file('child.vhdx'), child)
    const r = await run('vhdiinfo', [dir.file('child.vhdx')])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /Disk type\s*:\s*Differential/)
    assert.match(r.stdout, /Media size\s*:\s*4\.0 MiB \(4194304 bytes\)/)
    assert.match(r.stdout, /Parent filename\s*:\s*\.\\parent\.vhdx|Parent filename\s*:\s*C:\\parent\.vhdx/)
  })
})
