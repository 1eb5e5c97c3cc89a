// A QEMU guest (TCG, SeaBIOS) boots from qimg nbd: a qcow2 with a backing file, served over a
// unix socket, is the guest's IDE disk. Its boot sector reads sectors far into the overlay, from
// the backing file, and one the overlay hides in the backing file (BIOS int 13h AH=42h), prints
// their text on the serial port, writes itself to a sector whose cluster lives in the backing file
// (AH=43h: a copy-on-write through NBD), and leaves through isa-debug-exit. Afterwards the image
// checks clean and holds what the guest wrote.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import { needTools, runOk, tempDir } from '../helpers/oracle.js'
import { startServer } from './serve.js'

const dir = tempDir('qimg-nbd-guest-')
const at = (name: string) => dir.file(name)
after(() => dir.cleanup())

const SECTOR = 512
/** Where the boot sector keeps its messages and disk address packets. */
const MSG_OK = 0x80
const MSG_FAIL = 0x90
const READ_PACKETS = 0x100
const WRITE_PACKET = 0x140

/**
 * The boot sector's code, loaded by the BIOS at 0000:7C00 with the boot drive in DL (NASM
 * syntax, `org 0x7c00`; addresses are 0x7c00 + the offsets above). Reads the sector of each
 * disk address packet at READ_PACKETS to 0x8000 and prints it (text up to a NUL) until a packet
 * of size 0; then writes the boot sector itself (0x7c00) with the packet at WRITE_PACKET; prints
 * MSG_OK and exits QEMU with (0x10 << 1) | 1 = 33, or on a carry from int 13h prints MSG_FAIL and
 * exits with 35.
 */
const CODE: readonly [asm: string, bytes: readonly number[]][] = [
  ['cli', [0xfa]],
  ['xor ax, ax', [0x31, 0xc0]],
  ['mov ds, ax', [0x8e, 0xd8]],
  ['mov es, ax', [0x8e, 0xc0]],
  ['mov ss, ax', [0x8e, 0xd0]],
  ['mov sp, 0x7c00', [0xbc, 0x00, 0x7c]],
  ['sti', [0xfb]],
  ['mov [0x500], dl        ; the boot drive, kept outside the sector', [0x88, 0x16, 0x00, 0x05]],
  ['mov si, 0x7d00         ; READ_PACKETS', [0xbe, 0x00, 0x7d]],
  ['next: cmp byte [si], 0 ; 0x7c14', [0x80, 0x3c, 0x00]],
  ['je write               ; 0x7c32', [0x74, 0x19]],
  ['mov dl, [0x500]', [0x8a, 0x16, 0x00, 0x05]],
  ['mov ah, 0x42           ; extended read', [0xb4, 0x42]],
  ['push si', [0x56]],
  ['int 0x13', [0xcd, 0x13]],
  ['pop si', [0x5e]],
  ['jc fail                ; 0x7c4d', [0x72, 0x28]],
  ['push si', [0x56]],
  ['mov si, 0x8000', [0xbe, 0x00, 0x80]],
  ['call print             ; 0x7c5a', [0xe8, 0x2e, 0x00]],
  ['pop si', [0x5e]],
  ['add si, 16', [0x83, 0xc6, 0x10]],
  ['jmp next', [0xeb, 0xe2]],
  ['write: mov dl, [0x500] ; 0x7c32', [0x8a, 0x16, 0x00, 0x05]],
  ['mov si, 0x7d40         ; WRITE_PACKET', [0xbe, 0x40, 0x7d]],
  ['mov ax, 0x4300         ; extended write, no verify', [0xb8, 0x00, 0x43]],
  ['int 0x13', [0xcd, 0x13]],
  ['jc fail', [0x72, 0x0d]],
  ['mov si, 0x7c80         ; MSG_OK', [0xbe, 0x80, 0x7c]],
  ['call print', [0xe8, 0x14, 0x00]],
  ['mov al, 0x10', [0xb0, 0x10]],
  ['out 0xf4, al           ; isa-debug-exit', [0xe6, 0xf4]],
  ['hlt', [0xf4]],
  ['jmp $-1', [0xeb, 0xfd]],
  ['fail: mov si, 0x7c90   ; 0x7c4d, MSG_FAIL', [0xbe, 0x90, 0x7c]],
  ['call print', [0xe8, 0x07, 0x00]],
  ['mov al, 0x11', [0xb0, 0x11]],
  ['out 0xf4, al', [0xe6, 0xf4]],
  ['hlt', [0xf4]],
  ['jmp $-1', [0xeb, 0xfd]],
  ['print: lodsb           ; 0x7c5a: ds:si to COM1 up to a NUL', [0xac]],
  ['test al, al', [0x84, 0xc0]],
  ['jz done                ; 0x7c71', [0x74, 0x12]],
  ['mov ah, al', [0x88, 0xc4]],
  ['mov dx, 0x3fd          ; line status register', [0xba, 0xfd, 0x03]],
  ['busy: in al, dx', [0xec]],
  ['test al, 0x20          ; transmitter holding register empty', [0xa8, 0x20]],
  ['jz busy', [0x74, 0xfb]],
  ['mov al, ah', [0x88, 0xe0]],
  ['mov dx, 0x3f8', [0xba, 0xf8, 0x03]],
  ['out dx, al', [0xee]],
  ['jmp print', [0xeb, 0xe9]],
  ['done: ret              ; 0x7c71', [0xc3]],
]

/** An int 13h disk address packet: one sector at `lba` to or from 0000:`buffer`. */
function packet(lba: number, buffer: number): Uint8Array {
  const out = new Uint8Array(16)
  const view = new DataView(out.buffer)
  view.setUint8(0, 16)
  view.setUint16(2, 1, true)
  view.setUint16(4, buffer, true)
  view.setUint16(6, 0, true)
  view.setUint32(8, lba, true)
  return out
}

function bootSector(readLbas: readonly number[], writeLba: number): Uint8Array {
  const sector = new Uint8Array(SECTOR)
  const code = CODE.flatMap(([, bytes]) => bytes)
  assert.ok(code.length <= MSG_OK)
  sector.set(code)
  sector.set(new TextEncoder().encode('WRITE OK\r\n\0'), MSG_OK)
  sector.set(new TextEncoder().encode('DISK ERROR\r\n\0'), MSG_FAIL)
  readLbas.forEach((lba, i) => sector.set(packet(lba, 0x8000), READ_PACKETS + 16 * i))
  sector.set(packet(writeLba, 0x7c00), WRITE_PACKET)
  sector.set([0x55, 0xaa], 510)
  return sector
}

/** A sector holding `text` and a NUL, zero-padded. */
function textSector(text: string): Uint8Array {
  const sector = new Uint8Array(SECTOR)
  sector.set(new TextEncoder().encode(`${text}\r\n`))
  return sector
}

/** Writes `sector` at `lba` of a qcow2 with qemu-io. */
async function put(image: string, lba: number, sector: Uint8Array, name: string): Promise<void> {
  writeFileSync(at(name), sector)
  await runOk('qemu-io', ['-f', 'qcow2', '-c', `write -s ${at(name)} ${lba * SECTOR} ${SECTOR}`, image])
}

/** Runs QEMU to its exit (a guard kills a hung guest, far beyond any real run). */
function runGuest(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('latin1') })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const guard = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000)
    child.once('exit', (code) => {
      clearTimeout(guard)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('a QEMU guest on qimg nbd', () => {
  it('boots from a qcow2 with a backing file, reads through the chain, writes a sector', async (t) => {
    if (!needTools(t, 'qemu-system-x86_64', 'qemu-img', 'qemu-io')) return
    const base = at('base.qcow2')
    const top = at('top.qcow2')
    await runOk('qemu-img', ['create', '-f', 'qcow2', base, '64M'])
    await runOk('qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top, '256M'])
    const backing = textSector('backing 40000')
    await put(base, 40000, backing, 'b1')
    await put(base, 1000, textSector('stale 1000'), 'b2')
    // LBA 40001 shares its 64 KiB cluster with LBA 40000, which only the backing file holds.
    const boot = bootSector([480000, 40000, 1000], 40001)
    await put(top, 0, boot, 't0')
    await put(top, 480000, textSector('overlay far 480000'), 't1')
    await put(top, 1000, textSector('overlay over backing 1000'), 't2')

    const socket = at('disk.sock')
    const server = await startServer('qimg', ['-t', '-k', socket, '-f', 'qcow2', top], at('disk.pid'))
    const guest = await runGuest([
      '-nodefaults', '-display', 'none', '-no-reboot', '-accel', 'tcg', '-m', '32',
      '-drive', `file=nbd+unix:///?socket=${socket},format=raw,if=ide`,
      '-serial', 'stdio', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
    ])
    assert.equal(await server.stop(), 0, server.stderr())
    assert.equal(guest.stdout, 'overlay far 480000\r\nbacking 40000\r\noverlay over backing 1000\r\nWRITE OK\r\n', guest.stderr)
    assert.equal(guest.code, 33, guest.stderr)

    await runOk('qemu-img', ['check', top])
    await runOk('qemu-img', ['convert', '-O', 'raw', top, at('flat.raw')])
    const fd = openSync(at('flat.raw'), 'r')
    const sectorAt = (lba: number) => {
      const out = Buffer.alloc(SECTOR)
      assert.equal(readSync(fd, out, 0, SECTOR, lba * SECTOR), SECTOR)
      return out
    }
    try {
      assert.deepEqual(sectorAt(40001), Buffer.from(boot))
      assert.deepEqual(sectorAt(40000), Buffer.from(backing))
      assert.deepEqual(sectorAt(0), Buffer.from(boot))
    } finally {
      closeSync(fd)
    }
  })
})
