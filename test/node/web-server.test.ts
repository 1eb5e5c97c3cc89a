// The server of `qimg web`: the page's files, the named images with Range requests (206, a
// suffix range, 416 past the end, HEAD), and nothing else (404 for files not named, 405 for
// other methods) — the page reads images as any remote image, and no other file leaks.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { filePath, startWebServer, type WebServer } from '../../src/node/web-server.js'
import { tempDir } from '../helpers/oracle.js'

const dir = tempDir('qimg-web-server-')
const image = join(dir.path, 'disk img.qcow2')
const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff)
let server: WebServer
before(async () => {
  mkdirSync(join(dir.path, 'page'))
  writeFileSync(join(dir.path, 'page/index.html'), '<!doctype html>page')
  writeFileSync(image, bytes)
  writeFileSync(join(dir.path, 'secret.txt'), 'not served')
  server = await startWebServer(join(dir.path, 'page'), [image], '127.0.0.1', 0)
})
after(async () => {
  await server.close()
  dir.cleanup()
})

const get = (path: string, init: RequestInit = {}) => fetch(server.url + path, init)

test('the page is served at / and by name', async () => {
  for (const path of ['/', '/index.html', '/?open=x']) {
    const response = await get(path)
    assert.equal(response.status, 200, path)
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8')
    assert.equal(await response.text(), '<!doctype html>page')
  }
})

test('a named image answers ranges as a remote image needs', async () => {
  const path = filePath(image)
  assert.match(path, /^\/files\/.*\/disk%20img\.qcow2$/)
  const whole = await get(path)
  assert.equal(whole.status, 200)
  assert.equal(whole.headers.get('accept-ranges'), 'bytes')
  assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), bytes)
  const part = await get(path, { headers: { range: 'bytes=10-19' } })
  assert.equal(part.status, 206)
  assert.equal(part.headers.get('content-range'), 'bytes 10-19/1000')
  assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.subarray(10, 20))
  const suffix = await get(path, { headers: { range: 'bytes=-5' } })
  assert.equal(suffix.headers.get('content-range'), 'bytes 995-999/1000')
  assert.deepEqual(new Uint8Array(await suffix.arrayBuffer()), bytes.subarray(995))
  const open = await get(path, { headers: { range: 'bytes=990-' } })
  assert.deepEqual(new Uint8Array(await open.arrayBuffer()), bytes.subarray(990))
  const past = await get(path, { headers: { range: 'bytes=1000-1010' } })
  assert.equal(past.status, 416)
  assert.equal(past.headers.get('content-range'), 'bytes */1000')
  const head = await get(path, { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(head.headers.get('content-length'), '1000')
  assert.ok(head.headers.get('etag'))
})

test('nothing else is served, and only GET and HEAD are answered', async () => {
  for (const path of [filePath(join(dir.path, 'secret.txt')), '/files/etc/passwd', '/../secret.txt', '/page/index.html']) {
    const response = await get(path)
    assert.equal(response.status, 404, path)
    await response.arrayBuffer()
  }
  const post = await get('/', { method: 'POST', body: 'x' })
  assert.equal(post.status, 405)
  assert.equal(post.headers.get('allow'), 'GET, HEAD')
})
