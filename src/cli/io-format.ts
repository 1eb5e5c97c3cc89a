// qemu-io's output helpers: cvtstr sizes and read -v hex dumps (the reports: cli/io/report.ts).

/** qemu-io's cvtstr: "4 KiB", "1.500 KiB", "32 bytes" (%.3f, or %f for bytes, ".000…" cut). */
export function cvtstr(value: number): string {
  const units: [number, string][] = [[2 ** 60, ' EiB'], [2 ** 50, ' PiB'], [2 ** 40, ' TiB'], [2 ** 30, ' GiB'], [2 ** 20, ' MiB'], [2 ** 10, ' KiB']]
  for (const [size, suffix] of units) {
    if (value >= size) return trimmed(printfFixed(value / size, 3)) + suffix
  }
  return trimmed(printfFixed(value, 6)) + ' bytes'
}

/** cvtstr replaces the first ".000" and everything after it with the suffix. */
function trimmed(text: string): string {
  const at = text.indexOf('.000')
  return at < 0 ? text : text.slice(0, at)
}

/** printf's "%.Nf": toFixed, except that an exact tie rounds to even (toFixed rounds it up). */
export function printfFixed(value: number, digits: number): string {
  const text = value.toFixed(digits)
  const exact = value.toFixed(100).replace(/0+$/, '')
  const fraction = exact.slice(exact.indexOf('.') + 1)
  if (digits === 0 || fraction.length !== digits + 1 || !fraction.endsWith('5')) return text
  // A tie: toFixed went up; printf keeps the even one of the two neighbours.
  return Number(text[text.length - 1]) % 2 === 0 ? text : exact.slice(0, exact.length - 1)
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
