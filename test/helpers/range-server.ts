// A small HTTP server for tests of remote images: serves a directory with Range support
// (206 + Content-Range, 416 past the end), an ETag per file, and counts requests and bytes.
// Modes make it misbehave as real servers do: no ranges (200 with the whole file), an ETag
// that changes after N requests, 503 for the first N requests, requests past an offset held.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { readFile, stat } from 'node:fs/promises'
import { extname, join, normalize } from 'node:path'
import type { AddressInfo } from 'node:net'

/** How the server misbehaves; all off by default. */
export interface RangeServerMode {
  noRanges?: boolean
  /** The ETag changes once this many requests were answered. */
  changeEtagAfter?: number
  /** The first this-many requests get 503. */
  failFirst?: number
  /**
   * A ranged request starting at or past this offset waits for `release` (a source that stalls,
   * for tests of what a command does meanwhile); `onHold` is told when one does.
   */
  holdFrom?: number
  release?: Promise<void>
  onHold?: () => void
}

/** A running server and what it has seen. */
export interface RangeServer {
  url: string
  requests: { path: string; range: string | undefined; bytes: number }[]
  mode: RangeServerMode
  close(): Promise<void>
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' }

/** Serves `root` on 127.0.0.1 (a free port). */
export async function startRangeServer(root: string, mode: RangeServerMode = {}): Promise<RangeServer> {
  const requests: RangeServer['requests'] = []
  let answered = 0
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname)
    const range = request.headers.range
    const record = { path, range, bytes: 0 }
    requests.push(record)
    answered++
    if (mode.failFirst !== undefined && answered <= mode.failFirst) { response.writeHead(503).end(); return }
    const file = join(root, normalize(path).replace(/^(\.\.[/\\])+/, ''))
    let size: number
    try {
      const info = await stat(file)
      if (!info.isFile()) throw new Error('not a file')
      size = info.size
    } catch {
      response.writeHead(404, 'Not Found').end()
      return
    }
    const changed = mode.changeEtagAfter !== undefined && answered > mode.changeEtagAfter
    const headers: Record<string, string> = {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      etag: `"${size}-${changed ? 'b' : 'a'}"`,
      'accept-ranges': mode.noRanges ? 'none' : 'bytes',
      'cache-control': 'no-store',
    }
    const data = await readFile(file)
    const m = range && !mode.noRanges ? /^bytes=(\d+)-(\d*)$/.exec(range) : null
    if (!m) {
      record.bytes = request.method === 'HEAD' ? 0 : data.length
      response.writeHead(200, { ...headers, 'content-length': String(data.length) }).end(request.method === 'HEAD' ? undefined : data)
      return
    }
    const first = Number(m[1])
    const last = Math.min(m[2] ? Number(m[2]) : size - 1, size - 1)
    if (first >= size) {
      response.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end()
      return
    }
    if (mode.holdFrom !== undefined && first >= mode.holdFrom) {
      mode.onHold?.()
      await mode.release
    }
    const body = data.subarray(first, last + 1)
    record.bytes = body.length
    response.writeHead(206, { ...headers, 'content-range': `bytes ${first}-${last}/${size}`, 'content-length': String(body.length) }).end(body)
  }
  const server = createServer((request, response) => {
    handle(request, response).catch(() => response.writeHead(500).end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    mode,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
