// Standard input as a convert source: raw (the bytes are the guest's, the size is where the
// stream ends) or a streamOptimized VMDK (grains carry their addresses, the header the size).
// Other formats keep tables that point anywhere in the file, so a pipe cannot hold them.
import type { Decompressor } from '../codecs.js'
import { ImageError } from '../errors.js'
import { PROBE_BYTES, probeFormat } from '../format/probe.js'
import { MemoryStorage } from '../io/memory.js'
import type { ByteSource } from '../io/sink.js'
import { ByteReader } from './byte-reader.js'
import { feedStream, type FeedConsumer } from './feed.js'
import { openVmdkStream } from './vmdk-stream-read.js'

/** A source read once, front to back. */
export interface StreamInput {
  format: 'raw' | 'vmdk'
  /** The virtual size when the stream says it up front (VMDK); raw learns it at the end. */
  size: number | undefined
  /** Feeds the guest bytes in order; resolves to the virtual size. `limit` bounds a raw stream. */
  feed(consume: FeedConsumer, limit?: number): Promise<number>
}

/** Opens `source` as `format` (probed from the first bytes when undefined). */
export async function openStreamInput(source: ByteSource, format: string | undefined, inflateRaw: Decompressor): Promise<StreamInput> {
  const reader = new ByteReader(source)
  const name = source.name
  const probed = format ?? await probeFormat(new MemoryStorage(await reader.peek(PROBE_BYTES), name))
  if (probed === 'vmdk') {
    const vmdk = await openVmdkStream(reader, inflateRaw)
    return { format: 'vmdk', size: vmdk.size, feed: async (consume) => (await vmdk.feed(consume), vmdk.size) }
  }
  if (probed !== 'raw') {
    throw new ImageError('UNSUPPORTED', `${name}: a ${probed} image cannot be read from a pipe (its tables point anywhere in the file); only raw and VMDK streamOptimized can — give it as a file`)
  }
  return {
    format: 'raw',
    size: undefined,
    async feed(consume, limit = Number.POSITIVE_INFINITY) {
      const length = await feedStream(reader, consume, limit)
      if (length > limit) throw new ImageError('INVALID_ARGUMENT', `${name}: the stream is longer than --size ${limit}`)
      return length
    },
  }
}
