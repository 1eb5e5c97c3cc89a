// How many refcount blocks and refcount-table clusters a new file needs when they are laid out
// up front (streamed and uploaded qcow2): they must count every cluster of the file, themselves
// and the table that points at them included (qcow2.rst "Host cluster management"), so their
// number is a fixed point.

/** The refcount structures covering a file of `fileClusters(refTableClusters, refBlocks)` clusters. */
export function refcountCover(clusterSize: number, refcountOrder: number, fileClusters: (refTableClusters: number, refBlocks: number) => number): { refBlocks: number; refTableClusters: number } {
  const refsPerBlock = (clusterSize * 8) / 2 ** refcountOrder
  let refBlocks = 1
  let refTableClusters = 1
  for (;;) {
    const needBlocks = Math.ceil(fileClusters(refTableClusters, refBlocks) / refsPerBlock)
    const needTable = Math.ceil((needBlocks * 8) / clusterSize)
    if (needBlocks <= refBlocks && needTable <= refTableClusters) return { refBlocks, refTableClusters }
    refBlocks = Math.max(refBlocks, needBlocks)
    refTableClusters = Math.max(refTableClusters, needTable)
  }
}
