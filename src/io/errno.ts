// The errno values QEMU's block layer reports, with glibc's strerror(3) texts: one table for
// blkdebug's injected errors and for the messages qemu-io prints.

/** errno name → [number on Linux, strerror text]. */
const ERRNO: Record<string, [number, string]> = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  EIO: [5, 'Input/output error'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EACCES: [13, 'Permission denied'],
  EBUSY: [16, 'Device or resource busy'],
  EINVAL: [22, 'Invalid argument'],
  EFBIG: [27, 'File too large'],
  ENOSPC: [28, 'No space left on device'],
  EROFS: [30, 'Read-only file system'],
  ERANGE: [34, 'Numerical result out of range'],
  ENOTSUP: [95, 'Operation not supported'],
  ECONNRESET: [104, 'Connection reset by peer'],
  ETIMEDOUT: [110, 'Connection timed out'],
  ECONNREFUSED: [111, 'Connection refused'],
  EHOSTUNREACH: [113, 'No route to host'],
  EDQUOT: [122, 'Disk quota exceeded'],
}

/** True when `name` is an errno name this table knows. */
export function isErrnoName(name: unknown): name is string {
  return typeof name === 'string' && name in ERRNO
}

/** The errno name of a number (undefined when unknown). */
export function errnoName(errno: number): string | undefined {
  return Object.keys(ERRNO).find((name) => ERRNO[name]![0] === errno)
}

/** strerror(3) of an errno given by name or number, as glibc prints it. */
export function errnoText(errno: string | number): string {
  const name = typeof errno === 'number' ? errnoName(errno) : errno
  return name !== undefined && name in ERRNO ? ERRNO[name]![1] : `Unknown error ${errno}`
}
