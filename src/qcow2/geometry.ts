// Pure offset math of a QCOW2 image: which L1/L2 entry maps a guest offset, table sizes.

/** The numbers every lookup needs, derived once from the header. */
export interface Geometry {
  readonly clusterBits: number
  readonly clusterSize: number
  /** Bytes per L2 entry: 8, or 16 with extended L2. */
  readonly l2EntrySize: number
  /** Entries in one L2 table (one cluster). */
  readonly l2Entries: number
  readonly subclusterSize: number
  readonly extendedL2: boolean
}

/** Derives the geometry from cluster bits and the extended-L2 feature. */
export function makeGeometry(clusterBits: number, extendedL2: boolean): Geometry {
  const clusterSize = 2 ** clusterBits
  const l2EntrySize = extendedL2 ? 16 : 8
  return {
    clusterBits,
    clusterSize,
    l2EntrySize,
    l2Entries: clusterSize / l2EntrySize,
    subclusterSize: extendedL2 ? clusterSize / 32 : clusterSize,
    extendedL2,
  }
}

/** Guest bytes one L2 table maps. */
export function l2Coverage(g: Geometry): number {
  return g.clusterSize * g.l2Entries
}

/** L1 entries needed to map `virtualSize` bytes. */
export function l1EntriesFor(g: Geometry, virtualSize: number): number {
  return Math.ceil(virtualSize / l2Coverage(g))
}

/** Index in the L1 table of the L2 table mapping `guestOffset`. */
export function l1Index(g: Geometry, guestOffset: number): number {
  return Math.floor(guestOffset / l2Coverage(g))
}

/** Index within its L2 table of the entry mapping `guestOffset`. */
export function l2Index(g: Geometry, guestOffset: number): number {
  return Math.floor(guestOffset / g.clusterSize) % g.l2Entries
}

/** Offset of `offset` within its cluster. */
export function offsetInCluster(g: Geometry, offset: number): number {
  return offset % g.clusterSize
}
