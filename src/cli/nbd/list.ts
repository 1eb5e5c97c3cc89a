// qemu-nbd -L: connects to a server as a client and prints its exports as qemu-nbd 7.2's
// qemu_nbd_client_list does, line for line.
import type { Socket } from 'node:net'
import { isImageError } from '../../errors.js'
import { listExports, type ExportListing } from '../../nbd/list.js'
import { NBD_FLAG_HAS_FLAGS } from '../../nbd/constants.js'
import { SocketChannel } from '../../node/nbd-channel.js'
import { connectNbdSocket } from '../../node/nbd-storage.js'
import { reportError, type CliContext } from '../context.js'
import type { NbdListSettings } from './options.js'

/** Transmission flag names by bit, as qemu_nbd_client_list prints them. */
const FLAG_NAMES: readonly (string | undefined)[] = [
  undefined, 'readonly', 'flush', 'fua', 'rotational', 'trim', 'zeroes', 'df', 'multi', 'resize', 'cache', 'fast-zero',
]

/** The text qemu-nbd -L prints for a listing. */
export function formatListing(listing: readonly ExportListing[]): string {
  const lines = [`exports available: ${listing.length}`]
  for (const e of listing) {
    lines.push(` export: '${e.name}'`)
    if (e.description) lines.push(`  description: ${e.description}`)
    if (e.transmissionFlags & NBD_FLAG_HAS_FLAGS) {
      lines.push(`  size:  ${e.size}`)
      const names = FLAG_NAMES.filter((name, bit) => name !== undefined && e.transmissionFlags & (1 << bit))
      lines.push(`  flags: 0x${e.transmissionFlags.toString(16)} (${names.map((n) => ` ${n}`).join('')} )`)
    }
    if (e.minimumBlockSize) {
      lines.push(`  min block: ${e.minimumBlockSize}`, `  opt block: ${e.preferredBlockSize}`, `  max block: ${e.maximumBlockSize}`)
    }
    if (e.contexts.length > 0) lines.push(`  available meta contexts: ${e.contexts.length}`, ...e.contexts.map((c) => `   ${c}`))
  }
  return lines.join('\n') + '\n'
}

/** Lists the exports; 0 when listed, 1 with qemu-nbd's message when not. */
export async function listCommand(s: NbdListSettings, tls: ((socket: Socket) => Promise<Socket>) | undefined, ctx: CliContext): Promise<number> {
  try {
    const address = s.socketPath !== undefined ? { type: 'unix' as const, path: s.socketPath, exportName: '' } : { type: 'inet' as const, host: s.bind, port: s.port, exportName: '' }
    const socket = await connectNbdSocket(address)
    const listing = await listExports(new SocketChannel(socket, false, tls), { tls: tls !== undefined })
    ctx.out(formatListing(listing))
    return 0
  } catch (e) {
    if (!isImageError(e)) throw e
    reportError(ctx, e.message)
    return 1
  }
}
