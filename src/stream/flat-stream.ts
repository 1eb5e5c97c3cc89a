// Formats whose guest bytes are the file's bytes, to a sink: raw, and a fixed VHD (the bytes,
// then its footer: "Hard Disk Footer Format" in Microsoft's VHD specification).
import { CountingSink, writeZeroBytesTo, type Sink } from '../io/sink.js'
import { vpcImageLayout, type VpcCreateOptions } from '../vpc/create.js'
import type { FeedConsumer } from './feed.js'

/** A consumer that appends pieces to `sink` (zeros included: a pipe has no holes). */
export function rawWriter(sink: CountingSink, onBytes?: (n: number) => void): FeedConsumer {
  return async (piece) => {
    if (piece.offset > sink.written) await sink.padTo(piece.offset)
    await sink.write(piece.data)
    onBytes?.(piece.data.length)
  }
}

/**
 * Ends a fixed VHD of `guestBytes` guest bytes written so far: zeros up to the size the
 * geometry rounds to (as qemu-img's vpc create), then the footer.
 */
export async function endFixedVhd(sink: CountingSink, guestBytes: number, options: VpcCreateOptions): Promise<number> {
  const layout = vpcImageLayout(guestBytes, { ...options, fixed: true }, sink.name)
  await writeZeroBytesTo(sink, layout.guestSize - sink.written)
  for (const [, bytes] of layout.writes) await sink.write(bytes)
  return layout.guestSize
}

export type { Sink }
