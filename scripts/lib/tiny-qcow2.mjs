// A tiny, self-contained QCOW2 v3 writer for the demo (qimg has no writer yet). It lays out
// one image in memory, in this order, one cluster each:
//
//   0: header (v3, 112 bytes, zlib)   1: refcount table   2: refcount block (16-bit)
//   3: L1 table                       4..: L2 tables, then the data clusters
//
// Every cluster it writes has refcount 1 and every L1/L2 entry carries QCOW_OFLAG_COPIED, so
// `qemu-img check` finds no errors or leaks. Limits (plenty for a demo): the L1 table, the
// refcount table and the refcount block each fit in one cluster, so the file is at most
// clusterSize²/2 bytes (2 GiB at 64 KiB clusters).
//
//   buildTinyQcow2({ size: 64 << 20, data: [{ offset: 0, bytes }] }) -> Buffer (the whole file)

const COPIED = 1n << 63n
const ZERO_FLAG = 1n // L2 entry bit 0: the cluster reads as zeros

/**
 * @param {object} options
 * @param {number} options.size          virtual size in bytes (a multiple of 512)
 * @param {number} [options.clusterBits] 16 (64 KiB) by default
 * @param {{ offset: number, bytes: Uint8Array }[]} [options.data]  guest writes (may not overlap)
 * @param {number[]} [options.zeroClusters] guest offsets of clusters to mark as zero (no data)
 * @returns {Buffer} the image file
 */
export function buildTinyQcow2({ size, clusterBits = 16, data = [], zeroClusters = [] }) {
  const cs = 2 ** clusterBits
  const l2Entries = cs / 8
  const l2Coverage = cs * l2Entries
  const l1Size = Math.ceil(size / l2Coverage)
  if (l1Size * 8 > cs) throw new Error('virtual size too large for a one-cluster L1 table')

  // Gather the guest clusters to write: guest cluster index -> cluster contents.
  const clusters = new Map()
  for (const { offset, bytes } of data) {
    if (offset < 0 || offset + bytes.length > size) throw new Error(`write at ${offset} is outside the disk`)
    for (let done = 0; done < bytes.length;) {
      const guest = offset + done
      const index = Math.floor(guest / cs)
      if (!clusters.has(index)) clusters.set(index, Buffer.alloc(cs))
      const n = Math.min(bytes.length - done, cs - (guest % cs))
      clusters.get(index).set(bytes.subarray(done, done + n), guest % cs)
      done += n
    }
  }
  const zeros = new Set(zeroClusters.map((o) => Math.floor(o / cs)))

  // Host layout: fixed metadata clusters, one L2 table per L1 entry in use, then data.
  const usedL1 = [...new Set([...clusters.keys(), ...zeros].map((c) => Math.floor(c / l2Entries)))].sort((a, b) => a - b)
  const l2Host = new Map(usedL1.map((l1Index, i) => [l1Index, (4 + i) * cs]))
  const dataIndexes = [...clusters.keys()].sort((a, b) => a - b)
  const firstData = 4 + usedL1.length
  const totalClusters = firstData + dataIndexes.length
  if (totalClusters > cs / 2) throw new Error('image too large for one refcount block')

  const file = Buffer.alloc(totalClusters * cs)
  // Header ("Header" in docs/interop/qcow2.rst); the header extension area after it is all
  // zeros, which reads as the end-of-extensions marker.
  file.writeUInt32BE(0x514649fb, 0) // magic "QFI\xfb"
  file.writeUInt32BE(3, 4) // version
  file.writeUInt32BE(clusterBits, 20)
  file.writeBigUInt64BE(BigInt(size), 24)
  file.writeUInt32BE(l1Size, 36)
  file.writeBigUInt64BE(BigInt(3 * cs), 40) // l1_table_offset
  file.writeBigUInt64BE(BigInt(1 * cs), 48) // refcount_table_offset
  file.writeUInt32BE(1, 56) // refcount_table_clusters
  file.writeUInt32BE(4, 96) // refcount_order: 16-bit refcounts
  file.writeUInt32BE(112, 100) // header_length (byte 104 = compression type 0, zlib)

  // Refcount table -> one refcount block covering every cluster of the file.
  file.writeBigUInt64BE(BigInt(2 * cs), 1 * cs)
  for (let c = 0; c < totalClusters; c++) file.writeUInt16BE(1, 2 * cs + c * 2)

  // L1 -> L2 tables.
  for (const [l1Index, host] of l2Host) file.writeBigUInt64BE(BigInt(host) | COPIED, 3 * cs + l1Index * 8)

  // L2 entries: data clusters (copied, refcount 1), then zero clusters (no host cluster).
  dataIndexes.forEach((index, i) => {
    const host = (firstData + i) * cs
    clusters.get(index).copy(file, host)
    const l2 = l2Host.get(Math.floor(index / l2Entries))
    file.writeBigUInt64BE(BigInt(host) | COPIED, l2 + (index % l2Entries) * 8)
  })
  for (const index of zeros) {
    if (clusters.has(index)) throw new Error(`cluster ${index} is both data and zero`)
    const l2 = l2Host.get(Math.floor(index / l2Entries))
    file.writeBigUInt64BE(ZERO_FLAG, l2 + (index % l2Entries) * 8)
  }
  return file
}
