// Creation options several formats take with the same name, type and help text (QEMU's
// BLOCK_OPT_SIZE, the legacy encryption flag, the LUKS cipher options of block/crypto.h).
import type { CreateOptionDesc } from './module.js'

/** BLOCK_OPT_SIZE, which every format takes. */
export const SIZE_OPTION: CreateOptionDesc = { name: 'size', type: 'size', help: 'Virtual disk size' }

/** BLOCK_OPT_BACKING_FILE, as qcow, qcow2 and vmdk describe it. */
export const BACKING_FILE_OPTION: CreateOptionDesc = { name: 'backing_file', type: 'string', help: 'File name of a base image' }

/** BLOCK_OPT_ENCRYPT, the legacy flag for AES (qcow and qcow2). */
export const LEGACY_ENCRYPTION_OPTION: CreateOptionDesc = { name: 'encryption', type: 'bool', help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" }

/** BLOCK_CRYPTO_OPT_DEF_LUKS_*: the cipher options after key-secret, each name after `prefix` ('encrypt.' in qcow2). */
export function luksCipherOptions(prefix = ''): CreateOptionDesc[] {
  return [
    { name: `${prefix}cipher-alg`, type: 'string', help: 'Name of encryption cipher algorithm' },
    { name: `${prefix}cipher-mode`, type: 'string', help: 'Name of encryption cipher mode' },
    { name: `${prefix}ivgen-alg`, type: 'string', help: 'Name of IV generator algorithm' },
    { name: `${prefix}ivgen-hash-alg`, type: 'string', help: 'Name of IV generator hash algorithm' },
    { name: `${prefix}hash-alg`, type: 'string', help: 'Name of encryption hash algorithm' },
    { name: `${prefix}iter-time`, type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
  ]
}
