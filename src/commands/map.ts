// `map`: the allocation of every guest range through the chain, merged like qemu-img map.
import { ImageError } from '../errors.js'
import type { BlockDevice, BlockStatus } from '../format/device.js'

/** qemu-img's entry_mergeable: same flags and depth, and contiguous host offsets. */
function mergeable(curr: BlockStatus, next: BlockStatus): boolean {
  if (curr.length === 0) return false
  if (curr.zero !== next.zero || curr.data !== next.data || curr.depth !== next.depth || curr.present !== next.present) return false
  if ((curr.offset === undefined) !== (next.offset === undefined)) return false
  if (curr.file !== next.file && curr.offset !== undefined) return false
  return curr.offset === undefined || curr.offset + curr.length === next.offset
}

/** Block status of `[start, start+length)` as merged entries; `progress` hears of the bytes mapped. */
export async function mapImage(device: BlockDevice, start = 0, length = Infinity, progress?: (done: number, total: number) => void): Promise<BlockStatus[]> {
  const end = Math.min(start + length, device.size)
  const entries: BlockStatus[] = []
  let curr: BlockStatus | undefined
  let offset = start
  while (offset < end) {
    const next = await device.blockStatus(offset, Math.min(end - offset, 2 ** 30))
    offset += next.length
    progress?.(offset - start, end - start)
    if (curr && mergeable(curr, next)) {
      curr.length += next.length
      continue
    }
    if (curr) entries.push(curr)
    curr = next
  }
  if (curr) entries.push(curr)
  return entries
}

/** qemu-img map --output=json text (no trailing newline after the closing bracket line). */
export function formatMapJson(entries: readonly BlockStatus[]): string {
  const lines = entries.map((e) =>
    `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}` +
    (e.offset === undefined ? '' : `, "offset": ${e.offset}`) + '}')
  return '[' + lines.join(',\n') + ']\n'
}

/** C's printf("%#-16x"): 0x prefix except for zero, left-justified in 16 columns. */
function hexColumn(value: number): string {
  return (value === 0 ? '0' : '0x' + value.toString(16)).padEnd(16)
}

/**
 * qemu-img map human output: data ranges only, written to `out` line by line. qemu-img prints
 * each entry as it goes, so the lines before an entry it cannot show (compressed data has no
 * offset) are out when the error is thrown.
 */
export function formatMapHuman(entries: readonly BlockStatus[], out: (text: string) => void): void {
  out('Offset          Length          Mapped to       File\n')
  for (const e of entries) {
    if (e.data && e.offset === undefined) {
      throw new ImageError('UNSUPPORTED', 'File contains external, encrypted or compressed clusters.')
    }
    if (e.data && !e.zero) out(`${hexColumn(e.start)}${hexColumn(e.length)}${hexColumn(e.offset!)}${e.file ?? ''}\n`)
  }
}
