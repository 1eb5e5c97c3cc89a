// The HTTP server of `qimg web`: the inspector page's static files (dist/web/) and, read-only, the
// images named on the command line and the files of their backing chains, under /files/<path>
// with Range requests (206, 416; HEAD; an ETag of size and mtime), so the page reads them as it
// reads any remote image. No other file is served.
import { createReadStream, existsSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm' }
const PAGE_FILES = ['index.html', 'app.js', 'worker.js', 'zstd.wasm']

/**
 * The folder of the built page: dist/web/, found from dist/src/node/ (compiled) or dist/bundle/
 * (the bundled CLI); undefined when the page was not built (no esbuild at build time).
 */
export function webPageDir(): string | undefined {
  for (const up of ['../../web/', '../web/']) {
    const dir = fileURLToPath(new URL(up, import.meta.url))
    if (existsSync(join(dir, 'index.html')) && existsSync(join(dir, 'worker.js'))) return dir
  }
  return undefined
}

/** The URL path under which a local file is served: /files/ and its absolute path, each part encoded. */
export function filePath(file: string): string {
  return '/files' + resolve(file).split(sep).map(encodeURIComponent).join('/')
}

/** A running server: its base URL. */
export interface WebServer {
  url: string
  server: Server
  close(): Promise<void>
}

/** A byte range a Range header asks for, `null` when it cannot be satisfied, undefined for none. */
function requestedRange(header: string | undefined, size: number): { first: number; last: number } | null | undefined {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return undefined // absent, or a form not supported: the whole file (RFC 9110 allows)
  if (m[1] === '') {
    const suffix = Number(m[2])
    return suffix === 0 ? null : { first: Math.max(0, size - suffix), last: size - 1 }
  }
  const first = Number(m[1])
  if (first >= size) return null
  return { first, last: m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1) }
}

async function sendFile(request: IncomingMessage, response: ServerResponse, file: string): Promise<void> {
  const info = await stat(file)
  const size = info.size
  const headers: Record<string, string> = {
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    etag: `"${size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`,
    'accept-ranges': 'bytes',
    'cache-control': 'no-cache',
  }
  const range = requestedRange(request.headers.range, size)
  if (range === null) {
    response.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end()
    return
  }
  const { first, last } = range ?? { first: 0, last: size - 1 }
  const status = range ? 206 : 200
  const length = Math.max(0, last - first + 1)
  response.writeHead(status, { ...headers, 'content-length': String(length), ...(range ? { 'content-range': `bytes ${first}-${last}/${size}` } : {}) })
  if (request.method === 'HEAD' || length === 0) {
    response.end()
    return
  }
  // Streamed from the file: an image is never read whole.
  const stream = createReadStream(file, { start: first, end: last })
  stream.on('error', () => response.destroy())
  stream.pipe(response)
}

/**
 * Serves the page from `pageDir` and `files` (absolute paths) on `host`:`port` (0: any free
 * port). Only GET and HEAD; every other path is 404.
 */
export async function startWebServer(pageDir: string, files: readonly string[], host: string, port: number): Promise<WebServer> {
  const allowed = new Map(files.map((file) => [filePath(file), resolve(file)]))
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    const path = new URL(request.url ?? '/', 'http://host').pathname
    const page = path === '/' ? 'index.html' : path.slice(1)
    const file = PAGE_FILES.includes(page) ? join(pageDir, page) : allowed.get(path)
    if (file === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`${path}: not served (only the page and the images named to qimg web)\n`)
      return
    }
    await sendFile(request, response, file)
  }
  const server = createServer((request, response) => {
    handle(request, response).catch((e: unknown) => {
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`)
      else response.destroy()
    })
  })
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolveListen() })
  })
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shownHost}:${address.port}`,
    server,
    close: () => new Promise<void>((done) => {
      server.closeAllConnections()
      server.close(() => done())
    }),
  }
}
