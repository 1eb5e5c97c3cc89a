// Creating a QCOW image as qcow_co_create does: the header, the backing file name after it,
// the L1 table (8-byte aligned) written as whole zero sectors; mtime 0.
import { ImageError } from '../errors.js'
import { BACKING_FILE_OPTION, LEGACY_ENCRYPTION_OPTION, SIZE_OPTION } from '../format/create-options.js'
import type { CreateOptionDesc, FormatCreateRequest } from '../format/module.js'
import { CRYPT_AES, CRYPT_NONE, HEADER_LENGTH, QCOW_MAGIC, QCOW_VERSION, encodeHeader } from './header.js'

/** qcow_create_opts in the order qemu-img prints them in "Formatting …". */
export const QCOW_CREATE_OPTIONS: readonly CreateOptionDesc[] = [
  SIZE_OPTION,
  BACKING_FILE_OPTION,
  { name: 'backing_fmt', type: 'string', help: 'Format of the backing image' },
  LEGACY_ENCRYPTION_OPTION,
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'aes'" },
  { name: 'encrypt.key-secret', type: 'string', help: 'ID of the secret that provides the AES encryption key' },
]

/**
 * Whether the options ask for encryption, decided as qcow_co_create_opts does: the legacy
 * encryption=on becomes the crypto format 'qcow' (off is dropped, other spellings of a bool stay
 * as they are), encrypt.format=aes becomes 'qcow', the legacy key is renamed to encrypt.format
 * (both given is an error), and the format must then be a QCryptoBlockFormat that qcow takes.
 */
function wantsEncryption(options: ReadonlyMap<string, string>): boolean {
  let legacy = options.get('encryption')
  if (legacy === 'on') legacy = 'qcow'
  else if (legacy === 'off') legacy = undefined
  let format = options.get('encrypt.format')
  if (format === 'aes') format = 'qcow'
  if (legacy !== undefined && format !== undefined) {
    throw new ImageError('INVALID_ARGUMENT', "'encrypt.format' and its alias 'encryption' can't be used at the same time")
  }
  format ??= legacy
  if (format === undefined) return false
  if (format === 'luks') throw new ImageError('INVALID_ARGUMENT', 'Unsupported encryption format')
  if (format !== 'qcow') throw new ImageError('INVALID_ARGUMENT', `Parameter 'format' does not accept value '${format}'`)
  return true
}

/** The bytes of a new image (header, backing name, zeroed L1 sectors). */
export function qcowImageBytes(size: number, backingFile: string | undefined, encrypted: boolean): Uint8Array {
  const name = backingFile === undefined ? undefined : new TextEncoder().encode(backingFile)
  const clusterBits = name ? 9 : 12 // 512-byte clusters over a backing file: no copy-on-write needed
  const l2Bits = name ? 12 : 9
  const headerSize = Math.ceil((HEADER_LENGTH + (name?.length ?? 0)) / 8) * 8
  const shift = 2 ** (clusterBits + l2Bits)
  const l1Size = Math.ceil(size / shift)
  const l1Bytes = Math.ceil((l1Size * 8) / 512) * 512
  const out = new Uint8Array(headerSize + l1Bytes)
  out.set(encodeHeader({
    magic: QCOW_MAGIC, version: QCOW_VERSION, backingFileOffset: name ? BigInt(HEADER_LENGTH) : 0n,
    backingFileSize: name?.length ?? 0, mtime: 0, size: BigInt(size), clusterBits, l2Bits,
    cryptMethod: encrypted ? CRYPT_AES : CRYPT_NONE, l1TableOffset: BigInt(headerSize),
  }))
  if (name) out.set(name, HEADER_LENGTH)
  return out.subarray(0, l1Bytes > 0 ? out.length : Math.max(HEADER_LENGTH + (name?.length ?? 0), 0))
}

export async function createQcow(request: FormatCreateRequest): Promise<void> {
  const size = Math.ceil(request.size / 512) * 512 // silently rounded up (qcow_co_create_opts)
  if (size === 0) throw new ImageError('INVALID_ARGUMENT', 'Image size is too small, cannot be zero length')
  if (!Number.isSafeInteger(size)) throw new ImageError('INVALID_ARGUMENT', `Image size ${request.size} is beyond what qimg handles (2^53 bytes)`)
  const encrypted = wantsEncryption(request.options)
  if (encrypted && request.secret === undefined) throw new ImageError('BAD_KEY', "Parameter 'encrypt.key-secret' is required for cipher")
  const backing = request.options.get('backing_file')
  await request.storage.write(0, qcowImageBytes(size, backing === 'fat:' ? undefined : backing, encrypted))
}
