// Holes in host files, as QEMU's file-posix find_allocation / raw_co_block_status sees them:
// lseek(SEEK_DATA / SEEK_HOLE) through the optional native addon native/build/Release/qimg_seek.node.
// Without the addon (not built, Windows, browser) or on a filesystem that cannot tell, callers get
// undefined and treat the whole range as data, as QEMU does when lseek gives no answer.
import { loadAddon } from '../node/addon.js'

interface SeekAddon {
  /** New offset; -1 on ENXIO (at/after EOF, or no data after offset); -2 when unsupported. */
  seek(fd: number, offset: number, whence: 'data' | 'hole'): number
  /** fallocate(2) in a mode: 0, -2 when unsupported, -3 on EINVAL; throws (errno). Newer addons only. */
  fallocate?(fd: number, mode: FallocateMode, offset: number, length: number): number
}

/**
 * fallocate(2) modes QEMU's file-posix uses: 'allocate' (0, preallocation), 'punch'
 * (PUNCH_HOLE | KEEP_SIZE, discard) and 'zero' (ZERO_RANGE, write-zeroes).
 */
export type FallocateMode = 'allocate' | 'punch' | 'zero'

let addon: SeekAddon | null | undefined  // undefined: not tried yet; null: unavailable

function load(): SeekAddon | null {
  if (addon === undefined) addon = loadAddon<SeekAddon>('', 'qimg_seek', (mod) => typeof mod.seek === 'function')
  return addon
}

/** Whether the native addon is loaded, so findAllocation can answer (filesystem permitting). */
export function holesSupported(): boolean {
  return load() !== null
}

/**
 * Whether [offset, offset + length) of the open file `fd` starts in data or in a hole, and how
 * long that run is (capped at `length`). Offsets at or past EOF are a hole. Returns undefined when
 * the addon is missing or the filesystem does not support SEEK_DATA, so the caller treats the
 * range as data. Like QEMU, an inconsistent answer (a race with a writer) or an lseek error is
 * reported as data for the whole `length`. A data run that ends at a non-aligned EOF is returned
 * as is: rounding it up to the sector is the caller's business, as in raw_co_block_status.
 */
export function findAllocation(fd: number, offset: number, length: number):
    { hole: boolean; length: number } | undefined {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`bad offset ${offset}`)
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad length ${length}`)
  const lib = load()
  if (lib === null) return undefined
  const asData = { hole: false, length }
  let data: number
  let hole: number
  try {
    data = lib.seek(fd, offset, 'data')
    if (data === -2) return undefined
    if (data === -1) return { hole: true, length }  // trailing hole (or past EOF)
    if (data < offset) return asData  // EIO in QEMU: no information
    if (data > offset) return { hole: true, length: Math.min(data - offset, length) }
    hole = lib.seek(fd, offset, 'hole')
  } catch (err) {
    if (err instanceof Error && typeof (err as { errno?: unknown }).errno === 'number') return asData
    throw err
  }
  if (hole === -2) return undefined
  if (hole === -1) return { hole: true, length }  // truncated under us: ENXIO, a trailing hole
  if (hole <= offset) return asData  // EIO / EBUSY in QEMU: no information
  return { hole: false, length: Math.min(hole - offset, length) }
}

/**
 * Reserves `[offset, offset + length)` of the open file `fd` with fallocate (QEMU's
 * preallocation=falloc): true when done, false when the addon or the filesystem cannot.
 */
export function reserveSpace(fd: number, offset: number, length: number): boolean {
  return length > 0 && fallocateRange(fd, 'allocate', offset, length) === 'done'
}

/** Whether {@link reserveSpace} can work here (the addon has fallocate). */
export function reserveSupported(): boolean {
  return fallocateSupported()
}

/**
 * fallocate(2) on `[offset, offset + length)` of the open file `fd`: 'done', 'unsupported' (no
 * addon, not Linux, or the filesystem refuses the mode: QEMU's -ENOTSUP) or 'invalid' (EINVAL,
 * which some filesystems give for unaligned ranges). Other failures throw (errno set).
 */
export function fallocateRange(fd: number, mode: FallocateMode, offset: number, length: number): 'done' | 'unsupported' | 'invalid' {
  if (length <= 0) return 'done'
  const lib = load()
  if (!lib?.fallocate) return 'unsupported'
  const result = lib.fallocate(fd, mode, offset, length)
  return result === 0 ? 'done' : result === -3 ? 'invalid' : 'unsupported'
}

/** Whether {@link fallocateRange} can work here (the addon has it; the filesystem may still refuse). */
export function fallocateSupported(): boolean {
  return typeof load()?.fallocate === 'function'
}
