// Small helpers for VDI tests: an image made in memory, little-endian pokes, reads through a chain.
import { MemoryStorage } from '../../src/io/memory.js'
import { openChain } from '../../src/format/chain.js'
import { vdiModule } from '../../src/vdi/module.js'

/** A new VDI image of `size` bytes in memory (as `qimg create -f vdi` makes it). */
export async function newVdi(size: number, options: { static?: boolean; name?: string } = {}): Promise<MemoryStorage> {
  const storage = new MemoryStorage(new Uint8Array(0), options.name ?? 'test.vdi')
  await vdiModule.create!({ storage, size, options: new Map(options.static ? [['static', 'on']] : []), secret: undefined, crypto: undefined, compressors: undefined })
  return storage
}

/** Writes a little-endian value of `width` bytes at `offset`. */
export function pokeLE(bytes: Uint8Array, offset: number, width: 4 | 8, value: number | bigint): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  if (width === 4) view.setUint32(offset, Number(value), true)
  else view.setBigUint64(offset, BigInt(value), true)
}

/** Opens `bytes` as VDI (a copy) through the chain opener. */
export function openVdi(bytes: Uint8Array, writable = false, name = 'test.vdi') {
  return openChain(new MemoryStorage(bytes.slice(), name), { format: 'vdi', writable })
}
