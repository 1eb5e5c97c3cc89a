// Hostile VHDX images against qemu-img: headers, region tables, metadata items and BAT entries
// broken one at a time; qimg refuses each as qemu-img does, with its words (run as qemu-img),
// and as a typed error naming the file.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { QIMG, needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { resumVhdx } from './vhdx-helpers.js'

const dir = tempDir('qimg-vhdx-hostile-')
after(() => dir.cleanup())
const BAT = 0x200000
const METADATA = 0x300000

const put = (b: Uint8Array, at: number, width: 2 | 4 | 8, value: number | bigint) => {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  if (width === 2) v.setUint16(at, Number(value), true)
  else if (width === 4) v.setUint32(at, Number(value), true)
  else v.setBigUint64(at, BigInt(value), true)
}

const CASES: [string, (b: Uint8Array) => void][] = [
  ['one header broken', (b) => { b[0x10000 + 100]! ^= 1 }],
  ['both headers broken', (b) => { b[0x10000 + 100]! ^= 1; b[0x20000 + 100]! ^= 1 }],
  ['file signature', (b) => { b[0] = 0x41 }],
  ['region table checksum', (b) => { b[0x30000 + 100]! ^= 1 }],
  ['region table entry count', (b) => { put(b, 0x30008, 4, 3000); resumVhdx(b) }],
  ['BAT region over the log', (b) => { put(b, 0x30000 + 32, 8, 0x100000); resumVhdx(b) }],
  ['metadata signature', (b) => { b[METADATA] = 0x41 }],
  ['block size 3 MiB', (b) => put(b, METADATA + 0x10000, 4, 3 * 1024 * 1024)],
  ['logical sector size 1024', (b) => put(b, METADATA + 0x10000 + 32, 4, 1024)],
  ['BAT entry past the end of the file', (b) => put(b, BAT, 8, (0x7000n << 20n) | 6n)],
  ['BAT entry over the metadata', (b) => put(b, BAT, 8, (3n << 20n) | 6n)],
  ['has a parent but no locator', (b) => put(b, METADATA + 0x10000 + 4, 4, 2)],
  ['log version 1', (b) => { put(b, 0x10000 + 64, 2, 1); put(b, 0x20000 + 64, 2, 1); resumVhdx(b) }],
  ['virtual size 2^60', (b) => put(b, METADATA + 0x10000 + 8, 8, 2n ** 60n)],
]

describe('vhdx hostile images: qemu-img\'s verdicts', () => {
  for (const [name, corrupt] of CASES) {
    it(name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const path = dir.file(`h-${name.replaceAll(' ', '-')}.vhdx`)
      await runOk('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', path, '4M'])
      await runOk('qemu-io', ['-f', 'vhdx', '-c', 'write -P 1 0 512', '-c', 'write -P 2 2M 512', path])
      const bytes = new Uint8Array(readFileSync(path))
      corrupt(bytes)
      writeFileSync(path, bytes)
      const linked = dir.file('qemu-img')
      try { symlinkSync(QIMG, linked) } catch { /* made by an earlier case */ }
      for (const command of [['info', '-f', 'vhdx'], ['map', '--output=json', '-f', 'vhdx']]) {
        const [ours, theirs] = await Promise.all([run(process.execPath, [linked, ...command, path]), run('qemu-img', [...command, path])])
        assert.deepEqual({ code: ours.code, out: ours.stdout + ours.stderr }, { code: theirs.code, out: theirs.stdout + theirs.stderr }, `${name}: ${command.join(' ')}`)
        if (ours.code !== 0) {
          const plain = await run(process.execPath, [QIMG, ...command, path])
          assert.ok(plain.stderr.includes(path), `${name}: qimg's own message names no file: ${plain.stderr}`)
        }
      }
    })
  }
})
