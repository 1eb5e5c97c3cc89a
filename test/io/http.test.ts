// Remote images over HTTP: every image kind qemu-img makes read by URL (and as a Blob) with the
// portable codecs and crypto, bit-exact against qemu-img's raw; remote info costs a couple of
// requests; servers without ranges, changing ETags, missing files and transient failures give
// clear errors or are retried; backing names resolve against the URL under the policy.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { isImageError } from '../../src/errors.js'
import { HttpStorage } from '../../src/io/http.js'
import { openImage } from '../../src/portable/open.js'
import { urlFileHost } from '../../src/portable/url-host.js'
import type { BlockDevice } from '../../src/format/device.js'
import { needTools, runOk, sharedWorkDir } from '../helpers/oracle.js'
import { startRangeServer, type RangeServer } from '../helpers/range-server.js'
import { makeWebImages, type WebImage } from '../helpers/web-images.js'

let images: WebImage[] = []
const work = sharedWorkDir('qimg-http-', async (dir) => {
  images = await makeWebImages(dir)
  await runOk('qemu-img', ['create', '-f', 'qcow2', 'huge.qcow2', '64G'], { cwd: dir })
  await runOk('qemu-img', ['create', '-f', 'qcow2', '-u', '-b', '/etc/base.qcow2', '-F', 'qcow2', 'absolute.qcow2', '1M'], { cwd: dir })
})
let server: RangeServer
before(async () => { server = await startRangeServer(work.dir) })
after(() => server.close())

async function readAll(device: BlockDevice): Promise<Uint8Array> {
  const out = new Uint8Array(device.size)
  const piece = 1024 * 1024
  await Promise.all(Array.from({ length: Math.ceil(device.size / piece) }, async (_, i) => {
    const at = i * piece
    out.set(await device.read(at, Math.min(piece, device.size - at)), at)
  }))
  return out
}

const secretOf = (image: WebImage) => image.secret === undefined ? undefined : async () => new TextEncoder().encode(image.secret)

test('every image qemu-img made reads bit-exact by URL', async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  assert.ok(work.ready())
  for (const image of images) {
    const device = await openImage(`${server.url}/${image.file}`, { secret: secretOf(image) })
    try {
      assert.ok(Buffer.from(await readAll(device)).equals(readFileSync(join(work.dir, image.raw))), image.name)
    } finally {
      await device.close()
    }
  }
})

test('every single-file image reads bit-exact as a Blob', async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  for (const image of images.filter((i) => i.name !== 'chain')) {
    const device = await openImage(new Blob([readFileSync(join(work.dir, image.file))]), { secret: secretOf(image) })
    try {
      assert.ok(Buffer.from(await readAll(device)).equals(readFileSync(join(work.dir, image.raw))), image.name)
    } finally {
      await device.close()
    }
  }
})

test('info of a 64 GiB remote qcow2 costs two requests and 128 KiB', async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  const storage = await HttpStorage.open(`${server.url}/huge.qcow2`)
  const device = await openImage(storage)
  const info = await device.info()
  assert.equal(info.virtualSize, 64 * 2 ** 30)
  assert.ok(storage.stats.requests <= 2, `${storage.stats.requests} requests`)
  assert.ok(storage.stats.bytes <= 128 * 1024, `${storage.stats.bytes} bytes`)
  await device.close()
})

test('a server without ranges, a missing image and a changed image give their errors', async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  const other = await startRangeServer(work.dir, { noRanges: true })
  try {
    await assert.rejects(openImage(`${other.url}/plain.qcow2`), (e) => isImageError(e, 'NO_RANGES') && /byte-range/.test(e.message))
  } finally {
    await other.close()
  }
  await assert.rejects(openImage(`${server.url}/nothing.qcow2`), (e) => isImageError(e, 'NOT_FOUND') && e.message.includes('404'))
  const changing = await startRangeServer(work.dir, { changeEtagAfter: 1 })
  try {
    const device = await openImage(`${changing.url}/plain.qcow2`).catch((e: unknown) => e)
    const failure = device instanceof Error ? device : await readAll(device as BlockDevice).then(() => undefined, (e: unknown) => e)
    assert.ok(isImageError(failure, 'CHANGED'), String(failure))
  } finally {
    await changing.close()
  }
})

test('transient failures are retried', async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  const flaky = await startRangeServer(work.dir, { failFirst: 2 })
  try {
    const storage = await HttpStorage.open(`${flaky.url}/plain.qcow2`, { retryDelayMs: 1 })
    assert.equal(await storage.size(), readFileSync(join(work.dir, 'plain.qcow2')).length)
    assert.equal(flaky.requests.length, 3)
  } finally {
    await flaky.close()
  }
})

test('backing names resolve against the URL; absolute paths and other origins are refused', async (t) => {
  const host = urlFileHost()
  assert.equal(host.resolve!('http://a.test/d/top.qcow2', '../base/b.qcow2'), 'http://a.test/d/../base/b.qcow2')
  assert.throws(() => host.resolve!('http://a.test/d/top.qcow2', '/etc/b.qcow2'), (e) => isImageError(e, 'DENIED'))
  assert.throws(() => host.resolve!('http://a.test/d/top.qcow2', '//b.test/b.qcow2'), (e) => isImageError(e, 'DENIED'))
  assert.equal(urlFileHost({ allowAbsolutePaths: true }).resolve!('http://a.test/d/top.qcow2', '/b.qcow2'), 'http://a.test/b.qcow2')
  if (!needTools(t, 'qemu-img', 'qemu-io')) return
  await assert.rejects(openImage(`${server.url}/absolute.qcow2`), (e) => isImageError(e, 'DENIED') && e.message.includes('absolute path'))
  const device = await openImage(`${server.url}/absolute.qcow2`, { fileReferences: 'ignore' })
  await device.close()
})
