// qemu-img's progress line: "    (NN.NN/100%)" rewritten in place with a carriage return.

/** Reports progress in percent to a sink (the CLI's stdout). */
export class Progress {
  #last = -1
  #done = 0
  constructor(readonly total: number, readonly write: ((text: string) => void) | undefined) {
    this.#print(0)
  }
  /** Adds `bytes` to the work done. */
  add(bytes: number): void {
    this.#done += bytes
    this.#print(this.total === 0 ? 100 : Math.min(100, (this.#done / this.total) * 100))
  }
  /**
   * Prints the final line as qemu-img convert does: qemu_progress_print(100, 0) ("…\r"), then
   * qemu_progress_end's newline.
   */
  end(): void {
    if (this.write) this.write(`    (100.00/100%)\r\n`)
  }
  #print(percent: number): void {
    if (!this.write) return
    // QEMU prints at most every 1% step to keep output small.
    if (percent < 100 && Math.floor(percent) === this.#last) return
    this.#last = Math.floor(percent)
    this.write(`    (${percent.toFixed(2)}/100%)\r`)
  }
}
