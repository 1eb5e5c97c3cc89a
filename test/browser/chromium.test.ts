// qimg in a real browser: Debian's chromium, driven by playwright-core, loads the browser entry
// (bundled by esbuild for the browser platform, which fails on any Node builtin) from a small
// range-capable HTTP server, and reads every image qemu-img made — by URL (Range requests,
// backing files fetched from beside the top image) and as a Blob — with the JavaScript and
// WebAssembly codecs and crypto. Every guest byte must equal qemu-img's raw (SHA-256 compared).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { needTools, sharedWorkDir } from '../helpers/oracle.js'
import { startRangeServer, type RangeServer } from '../helpers/range-server.js'
import { makeWebImages, type WebImage } from '../helpers/web-images.js'

const ROOT = resolve(import.meta.dirname, '../../..')
const CHROMIUM = process.env.QIMG_CHROMIUM ?? '/usr/bin/chromium'

let images: WebImage[] = []
const work = sharedWorkDir('qimg-browser-', async (dir) => {
  images = await makeWebImages(dir)
  mkdirSync(join(dir, 'web'))
  const esbuild = await import('esbuild')
  await esbuild.build({
    entryPoints: [join(ROOT, 'dist/src/browser.js')], bundle: true, format: 'esm', platform: 'browser',
    outfile: join(dir, 'web/qimg.js'), logLevel: 'silent',
  })
  copyFileSync(join(ROOT, 'node_modules/@bokuweb/zstd-wasm/dist/web/zstd.wasm'), join(dir, 'web/zstd.wasm'))
  writeFileSync(join(dir, 'web/index.html'), '<!doctype html><meta charset="utf-8"><title>qimg</title>\n')
})
let server: RangeServer
before(async () => { server = await startRangeServer(work.dir) })
after(() => server.close())

/** What the page does for one image: open it, read every guest byte, hash them. */
interface PageJob { url: string; asBlob: boolean; secret: string | undefined }

async function inBrowser(jobs: PageJob[]): Promise<{ hashes: string[]; requests: number }> {
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 120_000 })
  try {
    const page = await browser.newPage()
    page.setDefaultTimeout(300_000)
    await page.goto(`${server.url}/web/index.html`)
    const hashes = await page.evaluate(async (list: PageJob[]) => {
      const qimg = await import('/web/qimg.js' as string) as typeof import('../../src/browser.js')
      const out: string[] = []
      for (const job of list) {
        const source = job.asBlob ? await (await fetch(job.url)).blob() : job.url
        const secret = job.secret === undefined ? undefined : async () => new TextEncoder().encode(job.secret)
        const device = await qimg.openImage(source, { secret })
        const bytes = new Uint8Array(device.size)
        const piece = 1 << 20
        await Promise.all(Array.from({ length: Math.ceil(device.size / piece) }, async (_, i) => {
          bytes.set(await device.read(i * piece, Math.min(piece, device.size - i * piece)), i * piece)
        }))
        await device.close()
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
        out.push(Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join(''))
      }
      return out
    }, jobs)
    return { hashes, requests: server.requests.length }
  } finally {
    await browser.close()
  }
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

test('Chromium reads every image by URL and as a Blob, bit-exact', { timeout: 900_000 }, async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io', CHROMIUM)) return
  assert.ok(work.ready())
  const byUrl = images.map((image) => ({ url: `${server.url}/${image.file}`, asBlob: false, secret: image.secret }))
  const asBlob = images.filter((image) => image.name !== 'chain').map((image) => ({ url: `${server.url}/${image.file}`, asBlob: true, secret: image.secret }))
  const before = server.requests.length
  const { hashes } = await inBrowser([...byUrl, ...asBlob])
  const expected = [...images, ...images.filter((image) => image.name !== 'chain')].map((image) => sha256(join(work.dir, image.raw)))
  const names = [...images.map((i) => `${i.name} by URL`), ...images.filter((i) => i.name !== 'chain').map((i) => `${i.name} as Blob`)]
  for (let i = 0; i < names.length; i++) assert.equal(hashes[i], expected[i], names[i])
  // The chain's backing files came from beside it, by Range requests.
  const ranged = server.requests.slice(before).filter((r) => r.path.endsWith('.qcow2') && r.range)
  for (const name of ['/chain/top.qcow2', '/chain/mid.qcow2', '/base/base.qcow2']) assert.ok(ranged.some((r) => r.path === name), `${name} fetched by range`)
})
