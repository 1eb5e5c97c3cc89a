// CHS geometry and the guest size, as QEMU's vpc.c computes them: the VHD specification's
// geometry algorithm (calculate_geometry), create's rounding up to a representable size
// (calculate_rounded_image_size), and open's choice between CHS and current_size.
import type { VhdFooter } from './footer.js'

export const VHD_CHS_MAX_C = 65535
export const VHD_CHS_MAX_H = 16
export const VHD_CHS_MAX_S = 255
/** The largest guest QEMU opens or creates: 2040 GiB in sectors. */
export const VHD_MAX_SECTORS = 0xff000000
/** Sectors of the largest CHS geometry (65535 × 16 × 255): the marker of "use current_size". */
export const VHD_MAX_GEOMETRY = VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S

export interface Chs {
  cylinders: number
  heads: number
  sectorsPerTrack: number
}

export const chsSectors = (g: Chs): number => g.cylinders * g.heads * g.sectorsPerTrack

/**
 * The specification's algorithm (calculate_geometry), with QEMU's integer widths: heads is a
 * uint8_t (its first value truncated before the tests that then replace it), cylinders a uint16_t.
 */
export function calculateGeometry(totalSectors: number): Chs {
  const total = Math.min(totalSectors, VHD_MAX_GEOMETRY)
  let sectorsPerTrack: number
  let heads: number
  let cylTimesHeads: number
  if (total >= 65535 * 16 * 63) {
    sectorsPerTrack = 255
    heads = 16
    cylTimesHeads = Math.floor(total / sectorsPerTrack)
  } else {
    sectorsPerTrack = 17
    cylTimesHeads = Math.floor(total / sectorsPerTrack)
    heads = Math.ceil(cylTimesHeads / 1024) & 0xff
    if (heads < 4) heads = 4
    if (cylTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31
      heads = 16
      cylTimesHeads = Math.floor(total / sectorsPerTrack)
    }
    if (cylTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63
      heads = 16
      cylTimesHeads = Math.floor(total / sectorsPerTrack)
    }
  }
  return { cylinders: Math.floor(cylTimesHeads / heads) & 0xffff, heads, sectorsPerTrack }
}

/** What create makes of a size: its geometry and the guest sectors (calculate_rounded_image_size). */
export interface RoundedSize extends Chs {
  totalSectors: number
}

/**
 * calculate_rounded_image_size: without force_size, the smallest geometry holding at least the
 * requested sectors (so convert never truncates); a size the largest geometry cannot hold, and
 * every size with force_size, keep the geometry 65535×16×255 and the size in sectors. Undefined
 * when that size is above 2040 GiB.
 */
export function roundedImageSize(sizeBytes: number, forceSize: boolean): RoundedSize | undefined {
  let g: Chs = { cylinders: 0, heads: 0, sectorsPerTrack: 0 }
  if (forceSize) {
    g = { cylinders: VHD_CHS_MAX_C, heads: VHD_CHS_MAX_H, sectorsPerTrack: VHD_CHS_MAX_S }
  } else {
    const wanted = Math.min(VHD_MAX_GEOMETRY, Math.floor(sizeBytes / 512))
    for (let i = 0; wanted > chsSectors(g); i++) g = calculateGeometry(wanted + i)
  }
  if (chsSectors(g) === VHD_MAX_GEOMETRY) {
    const totalSectors = Math.floor(sizeBytes / 512)
    return totalSectors > VHD_MAX_SECTORS ? undefined : { ...g, totalSectors }
  }
  return { ...g, totalSectors: chsSectors(g) }
}

/**
 * The creator applications whose images QEMU sizes by current_size rather than by CHS (vpc_open:
 * Hyper-V 'win ', QEMU with force_size 'qem2', Disk2vhd 'd2v ', XenConverter 'CTXS', XenServer
 * 'tap\0').
 */
const CURRENT_SIZE_CREATORS = new Set(['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'])

/**
 * The guest size in sectors as vpc_open decides it: the CHS product, unless the creator is one
 * that uses current_size or the geometry is the maximum one (then current_size / 512).
 */
export function guestSectors(footer: VhdFooter): number {
  const chs = chsSectors(footer)
  if (!CURRENT_SIZE_CREATORS.has(footer.creatorApp) && chs !== VHD_MAX_GEOMETRY) return chs
  return Number(footer.currentSize / 512n)
}
