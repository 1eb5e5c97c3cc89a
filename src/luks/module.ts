// The luks format module (QEMU block/crypto.c, block_crypto_probe_luks / _open_luks /
// _co_create_opts_luks): probe by magic, open, and create with QEMU's options.
import type { CreateOptionDesc, FormatCreateRequest, FormatModule } from '../format/module.js'
import { ImageError } from '../errors.js'
import { SIZE_OPTION, luksCipherOptions } from '../format/create-options.js'
import { RawImage } from '../raw.js'
import { formatLuks, type LuksCreateOptions } from '../crypto/luks.js'
import { LUKS_MAGIC, LUKS_HEADER_LENGTH } from '../crypto/luks-header.js'
import { CIPHER_ALGORITHMS, CIPHER_MODES, HASH_ALGORITHMS, IVGEN_ALGORITHMS, isOneOf } from '../crypto/provider.js'
import { SECTOR_SIZE } from '../crypto/sector-cipher.js'
import { LuksImage } from './image.js'
import { measureLuksHeader } from '../crypto/luks-measure.js'
import { luksToJson } from '../crypto/luks-info-json.js'
import type { LuksInfo } from '../format/info.js'

/** The options in the order qemu-img 7.2 prints them ("Formatting …"). */
const CREATE_OPTIONS: readonly CreateOptionDesc[] = [
  SIZE_OPTION,
  { name: 'key-secret', type: 'string', help: 'ID of the secret that provides the keyslot passphrase' },
  ...luksCipherOptions(),
]

/** qcrypto_block_has_format: the magic and version 1. */
function probeLuks(head: Uint8Array): number {
  if (head.length < 8) return 0
  if (!LUKS_MAGIC.every((b, i) => head[i] === b)) return 0
  return ((head[6]! << 8) | head[7]!) === 1 ? 1000 : 0
}

/** QEMU's parse_option_number. */
function number(key: string, value: string): number {
  const match = /^\s*(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(value)
  if (!match) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' expects a number`)
  if (match[1] !== undefined) return Number.parseInt(match[1], 16)
  return match[2] !== undefined ? Number.parseInt(match[2], 8) : Number(match[3])
}

/** The LUKS options of an option map, with QEMU's QAPI messages. */
export function luksCreateOptions(opts: ReadonlyMap<string, string>): LuksCreateOptions {
  const choice = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const value = opts.get(key)
    if (value !== undefined && !isOneOf(allowed, value)) throw new ImageError('INVALID_ARGUMENT', `Parameter '${key}' does not accept value '${value}'`)
    return value as T | undefined
  }
  const time = opts.get('iter-time')
  return {
    cipherAlg: choice('cipher-alg', CIPHER_ALGORITHMS),
    cipherMode: choice('cipher-mode', CIPHER_MODES),
    ivgenAlg: choice('ivgen-alg', IVGEN_ALGORITHMS),
    ivgenHashAlg: choice('ivgen-hash-alg', HASH_ALGORITHMS),
    hashAlg: choice('hash-alg', HASH_ALGORITHMS),
    iterTime: time === undefined ? undefined : number('iter-time', time),
  }
}

/**
 * block_crypto_co_create_opts_luks: the file is sized payload + size with its preallocation
 * (metadata counts as off), then the header and key slot 0's material are written (the other
 * slots' areas stay holes, as in QEMU).
 */
async function createLuks(request: FormatCreateRequest): Promise<void> {
  const { storage, options, size } = request
  const preallocation = options.get('preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(preallocation)) throw new ImageError('INVALID_ARGUMENT', `Parameter 'preallocation' does not accept value '${preallocation}'`)
  const luks = luksCreateOptions(options)
  if (request.secret === undefined) throw new ImageError('BAD_KEY', "Parameter 'key-secret' is required for cipher")
  if (!request.crypto) throw new ImageError('UNSUPPORTED', 'no crypto provider was given to create an encrypted image')
  const { volume, area } = await formatLuks(request.crypto, luks, request.secret)
  const payloadOffset = volume.header.payloadOffsetSector * SECTOR_SIZE
  const file = await RawImage.open(storage, { writable: true })
  await file.setVirtualSize(payloadOffset + size, preallocation === 'metadata' ? 'off' : preallocation as 'off' | 'falloc' | 'full')
  await storage.write(0, area.subarray(0, LUKS_HEADER_LENGTH))
  const slot = volume.header.keySlots[0]!
  const at = slot.keyOffsetSector * SECTOR_SIZE
  await storage.write(at, area.subarray(at, at + volume.header.masterKeyLength * slot.stripes))
}

export const luksModule: FormatModule = {
  name: 'luks',
  probe: probeLuks,
  open: (storage, context) => LuksImage.open(storage, context),
  createOptions: CREATE_OPTIONS,
  zeroInit: false,
  removeOnCreateFailure: true,
  create: createLuks,
  formatSpecificToJson: (data) => luksToJson(data as LuksInfo),
  /** block_crypto_measure: the header, then the virtual size as it is (no rounding). */
  async measure({ options, source, lookupSecret }) {
    const size = 'device' in source ? source.device.size : source.size
    const required = measureLuksHeader(options, '', lookupSecret) + size
    return { required, fullyAllocated: required, bitmaps: undefined }
  },
}
