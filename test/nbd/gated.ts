// A block device whose reads can be held: to keep NBD requests in flight on purpose.
import { BlockDevice } from '../../src/format/device.js'

/** Reads at `gatedOffset` wait until `release()`: to hold a request in flight on purpose. */
export class GatedDevice extends BlockDevice {
  gatedOffset = -1
  started: number[] = []
  #gate: Promise<void> = Promise.resolve()
  #open: () => void = () => undefined
  onStart: (() => void) | undefined
  close_gate(): void {
    this.#gate = new Promise((resolve) => { this.#open = resolve })
  }
  release(): void {
    this.#open()
  }
  override async readInto(out: Uint8Array, offset: number): Promise<void> {
    this.started.push(offset)
    this.onStart?.()
    if (offset === this.gatedOffset || this.gatedOffset === -2) await this.#gate
    return super.readInto(out, offset)
  }
  override async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length)
    await this.readInto(out, offset)
    return out
  }
}

