// The one shape of VHDX open errors: the file, the structure and its offset, the rule; QEMU's
// text beside it (most of vhdx_open's refusals are a bare errno).
import { ImageError } from '../errors.js'

/**
 * `qemu`: the errno text (bdrv_open_driver names the file, then qemu-img again); `line`: what
 * QEMU's error_report printed before it (a further report, see cli/context.ts reportError).
 */
export function openError(code: 'NOT_AN_IMAGE' | 'CORRUPT' | 'UNSUPPORTED', file: string, where: string, rule: string, offset: number, qemu = 'Invalid argument', line?: string): ImageError {
  return new ImageError(code, `${file}: ${where}: ${rule}`, { file, offset, qemuText: qemuOpenText(file, qemu, line) })
}

export function qemuOpenText(file: string, qemu: string, line?: string): string {
  const text = `Could not open '${file}': Could not open '${file}': ${qemu}`
  return line === undefined ? text : `${line}\nqimg: ${text}`
}
