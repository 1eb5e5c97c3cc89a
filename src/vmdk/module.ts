// The VMDK format module: probe (vmdk_probe), open, create options and create, check.
import type { FormatModule } from '../format/module.js'
import { checkVmdk } from './check.js'
import { createVmdk, resolveVmdkOptions, VMDK_CREATE_OPTIONS } from './create.js'
import { VMDK3_MAGIC, VMDK4_MAGIC } from './header.js'
import { openVmdk } from './open.js'

/** vmdk_probe: the sparse magics, or a descriptor whose first non-comment, non-blank line is version=1|2|3. */
export function probeVmdk(head: Uint8Array): number {
  if (head.length < 4) return 0
  const magic = new DataView(head.buffer, head.byteOffset, head.length).getUint32(0)
  if (magic === VMDK3_MAGIC || magic === VMDK4_MAGIC) return 100
  const end = head.length
  const starts = (p: number, text: string) => end - p >= text.length && String.fromCharCode(...head.subarray(p, p + text.length)) === text
  for (let p = 0; p < end;) {
    if (head[p] === 0x23) { // '#': a comment line
      while (p < end && head[p] !== 0x0a) p++
      p++
      continue
    }
    if (head[p] === 0x20) { // only blank lines before version=
      while (p < end && head[p] === 0x20) p++
      if (p < end && head[p] === 0x0d) p++
      if (p === end || head[p] !== 0x0a) return 0
      p++
      continue
    }
    for (const v of ['1', '2', '3']) {
      if (starts(p, `version=${v}\n`) || starts(p, `version=${v}\r\n`)) return 100
    }
    return 0
  }
  return 0
}

export const vmdkModule: FormatModule = {
  name: 'vmdk',
  probe: probeVmdk,
  open: (storage, context) => openVmdk(storage, context),
  createOptions: VMDK_CREATE_OPTIONS,
  compressedWrites: true,
  check: checkVmdk,
  checkCreateOptions: (options) => { resolveVmdkOptions(options) },
  create: createVmdk,
}
