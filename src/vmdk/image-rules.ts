// Small rules of VmdkImage taken from QEMU's vmdk.c: when the extents share a cluster size,
// which compressor writes grains, and the error for a write where no grain table exists.
import type { Compressor, Compressors } from '../codecs.js'
import { ImageError } from '../errors.js'
import type { PlacedExtent } from './image.js'

/** vmdk_extents_type_eq over every extent (vmdk_co_get_info fails with -ENOTSUP otherwise). */
export function extentsAlike(extents: readonly PlacedExtent[]): boolean {
  const traits = (e: PlacedExtent) => e.kind === 'flat' ? 'flat' : `${e.sparse.compressed} ${e.sparse.clusterSectors}`
  return extents.every((e) => traits(e) === traits(extents[0]!))
}

/** vmdk_co_get_info: a cluster size only when every extent is alike and the first is sparse. */
export function sharedClusterSize(extents: readonly PlacedExtent[]): number | undefined {
  const first = extents[0]
  return first && first.kind !== 'flat' && extentsAlike(extents) ? first.sparse.grainBytes : undefined
}

/** zlib's compress() parameters when the host has them (qemu-img's very bytes), else the qcow2 deflate. */
export function grainCompressor(compressors: Compressors | undefined): Compressor | undefined {
  return compressors?.deflateDefault ?? compressors?.deflate
}

/** A write where the grain directory names no grain table (QEMU would write through garbage). */
export function noTable(file: string, grain: number): ImageError {
  return new ImageError('UNSUPPORTED', `${file}: VMDK grain ${grain} has no grain table; qimg does not add grain tables to an image`, { file })
}
