// The one shape of VHDX open errors: the file, the structure and its offset, the rule; QEMU's
// text beside it (most of vhdx_open's refusals are a bare errno).
import { ImageError } from '../errors.js'

export function openError(code: 'NOT_AN_IMAGE' | 'CORRUPT' | 'UNSUPPORTED', file: string, where: string, rule: string, offset: number, qemu = 'Invalid argument'): ImageError {
  return new ImageError(code, `${file}: ${where}: ${rule}`, { file, offset, qemuText: `Could not open '${file}': ${qemu}` })
}
