// qemu-io's output helpers: cvtstr sizes, the statistics line, and read -v hex dumps.

/** qemu-io's cvtstr: "4 KiB", "1.500000 KiB", "32 bytes". */
export function cvtstr(value: number): string {
  const units: [number, string][] = [[2 ** 60, ' EiB'], [2 ** 50, ' PiB'], [2 ** 40, ' TiB'], [2 ** 30, ' GiB'], [2 ** 20, ' MiB'], [2 ** 10, ' KiB']]
  for (const [size, suffix] of units) {
    if (value >= size) return trimmed(value / size) + suffix
  }
  return trimmed(value) + ' bytes'
}

function trimmed(value: number): string {
  const text = value.toFixed(3)
  return text.endsWith('.000') ? text.slice(0, -4) : text
}

/** The statistics line qemu-io prints after an I/O command. */
export function statsLine(bytes: number, ops: number, seconds: number): string {
  const secs = Math.max(seconds, 1e-6)
  const time = `${seconds.toFixed(2).padStart(5, '0')} sec`
  return `${cvtstr(bytes)}, ${ops} ops; ${time} (${cvtstr(bytes / secs)}/sec and ${(ops / secs).toFixed(4)} ops/sec)`
}

/** qemu-io's dump_buffer for read -v: offset, 16 hex bytes, alphanumerics. */
export function hexDump(data: Uint8Array, offset: number): string {
  let out = ''
  for (let i = 0; i < data.length; i += 16) {
    const row = data.subarray(i, Math.min(i + 16, data.length))
    out += (offset + i).toString(16).padStart(8, '0') + ':  '
    for (const b of row) out += b.toString(16).padStart(2, '0') + ' '
    out += ' '
    for (const b of row) out += /[A-Za-z0-9]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '.'
    out += '\n'
  }
  return out
}
