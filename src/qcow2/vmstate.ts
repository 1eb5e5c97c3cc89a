// The VM state area (savevm data). QEMU's qcow2 keeps it in the guest address space past the
// disk, from the first L1 entry the disk does not need (qcow2_vm_state_offset:
// l1_vm_state_index = size_to_l1(virtual size)), read and written as guest data through the
// normal paths (qcow2_save_vmstate / qcow2_load_vmstate), the L1 table grown to reach it.
import { l1EntriesFor, l2Coverage, type Geometry } from './geometry.js'

/** Guest offset where the VM state area starts. */
export function vmStateOffset(g: Geometry, virtualSize: number): number {
  return l1EntriesFor(g, virtualSize) * l2Coverage(g)
}

/**
 * The L1 size QEMU grows to when a write needs `minEntries` (qcow2_grow_l1_table without
 * exact_size): half as large again, rounded up, until they fit — fewer grows later.
 */
export function grownL1Entries(current: number, minEntries: number): number {
  let entries = Math.max(current, 1)
  while (minEntries > entries) entries = Math.ceil((entries * 3) / 2)
  return entries
}

/** The guest ranges a request splits into, one per L2 table (QEMU grows the L1 per table it reaches). */
export function perTableRanges(g: Geometry, offset: number, length: number): { start: number; end: number }[] {
  const coverage = l2Coverage(g)
  const ranges: { start: number; end: number }[] = []
  for (let start = offset; start < offset + length;) {
    const end = Math.min(offset + length, (Math.floor(start / coverage) + 1) * coverage)
    ranges.push({ start, end })
    start = end
  }
  return ranges
}
