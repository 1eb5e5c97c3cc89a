// The NBD error a failed command reports (QEMU's system_errno_to_nbd_errno over the errno the
// block layer gave): from an ImageError's code, or the errno name of the system error beneath.
import { isImageError } from '../errors.js'
import { NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_ENOTSUP, NBD_EOVERFLOW, NBD_EPERM, NBD_ESHUTDOWN } from './constants.js'

/** errno names as system_errno_to_nbd_errno maps them. */
const BY_ERRNO: Record<string, number> = {
  EPERM: NBD_EPERM,
  EROFS: NBD_EPERM,
  EIO: NBD_EIO,
  ENOMEM: NBD_ENOMEM,
  ENOSPC: NBD_ENOSPC,
  EFBIG: NBD_ENOSPC,
  EDQUOT: NBD_ENOSPC,
  EOVERFLOW: NBD_EOVERFLOW,
  ENOTSUP: NBD_ENOTSUP,
  EOPNOTSUPP: NBD_ENOTSUP,
  ESHUTDOWN: NBD_ESHUTDOWN,
  EINVAL: NBD_EINVAL,
}

/** The errno name somewhere down an error's cause chain (Node's system errors carry `code`). */
function errnoOf(e: unknown): string | undefined {
  for (let at: unknown = e, depth = 0; at && depth < 8; depth++) {
    const code = (at as { code?: unknown }).code
    if (typeof code === 'string' && code in BY_ERRNO) return code
    at = (at as { cause?: unknown }).cause
  }
  return undefined
}

/** The NBD error number for a failure of a command; EIO when nothing says otherwise. */
export function nbdErrorOf(e: unknown): number {
  const errno = errnoOf(e)
  if (errno !== undefined) return BY_ERRNO[errno]!
  if (isImageError(e)) {
    switch (e.code) {
      case 'READ_ONLY': return NBD_EPERM
      case 'OUT_OF_RANGE':
      case 'INVALID_ARGUMENT': return NBD_EINVAL
      case 'UNSUPPORTED': return NBD_ENOTSUP
      default: return NBD_EIO
    }
  }
  return NBD_EIO
}
