// The inspector page (qimg web) in Chromium: `qimg web` serves a qcow2 qemu-img made (a backing
// file, a snapshot, a bitmap, compressed, zero and data clusters at two depths); the page's info
// and map must equal qemu-img's JSON, its hex view the raw bytes, its check qemu-img check, and
// its streamed downloads qemu-img convert's raw and a qcow2 qemu-img compare finds equal. Files
// dropped on the page (an <input type=file>) open with no request to the server. One browser.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { QIMG, needTools, run, runOk, sharedWorkDir } from '../helpers/oracle.js'
import { WEB_PASSPHRASE } from '../helpers/web-images.js'

const ROOT = resolve(import.meta.dirname, '../../..')
const CHROMIUM = process.env.QIMG_CHROMIUM ?? '/usr/bin/chromium'
const ARTEFACTS = join(ROOT, 'dist/test-artefacts')

const work = sharedWorkDir('qimg-web-', async (dir) => {
  const q = (...args: string[]) => runOk('qemu-img', args, { cwd: dir })
  const io = (file: string, ...commands: string[]) => runOk('qemu-io', [...commands.flatMap((c) => ['-c', c]), file], { cwd: dir })
  await q('create', '-f', 'qcow2', 'base.qcow2', '8M')
  await io('base.qcow2', 'write -P 0x33 0 1M', 'write -P 0x34 5M 512k')
  await q('create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2')
  await io('top.qcow2', 'write -P 0x11 512k 128k', 'write -c -P 0x22 2M 64k', 'write -z 5M 64k', 'write -P 0x44 7M 64k')
  await q('snapshot', '-c', 'before', 'top.qcow2')
  await io('top.qcow2', 'write -P 0x55 3M 64k')
  await q('bitmap', '--add', 'top.qcow2', 'b0')
  await q('convert', '-O', 'raw', 'top.qcow2', 'top.raw')
  await q('convert', '--object', `secret,id=s0,data=${WEB_PASSPHRASE}`, '-O', 'qcow2',
    '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', 'top.raw', 'luks.qcow2')
})

let server: ChildProcess | undefined
after(() => { server?.kill('SIGKILL') })

/** Starts `qimg web` on the images in `dir`; resolves to the links it prints for them. */
async function startQimgWeb(dir: string, images: string[]): Promise<string[]> {
  server = spawn(process.execPath, [QIMG, 'web', '--port', '0', ...images], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
  let text = ''
  return new Promise<string[]>((resolveUrl, reject) => {
    server!.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      const links = images.map((image) => new RegExp(`^ {2}${image.replaceAll('.', '\\.')}: (\\S+)$`, 'm').exec(text)?.[1])
      if (links.every((link) => link !== undefined)) resolveUrl(links as string[])
    })
    server!.once('exit', (code) => reject(new Error(`qimg web exited ${code}: ${text}`)))
  })
}

/** qemu-img's JSON without what a page reading by URL or Blob cannot know (actual-size: the host file's blocks). */
function withoutActualSize(text: string): unknown {
  const value = JSON.parse(text) as Record<string, unknown>[]
  for (const layer of value) delete layer['actual-size']
  return value
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

test('the inspector page shows what qemu-img shows, and streams converted copies', { timeout: 600_000 }, async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io', CHROMIUM)) return
  assert.ok(work.ready())
  const dir = work.dir
  const [pageUrl, luksUrl] = await startQimgWeb(dir, ['top.qcow2', 'luks.qcow2']) as [string, string]
  const origin = new URL(pageUrl).origin
  const qemuInfo = await runOk('qemu-img', ['info', '--backing-chain', '--output=json', 'top.qcow2'], { cwd: dir })
  const qemuMap = await runOk('qemu-img', ['map', '--output=json', 'top.qcow2'], { cwd: dir })
  const raw = readFileSync(join(dir, 'top.raw'))
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 120_000 })
  try {
    const context = await browser.newContext({ acceptDownloads: true })
    const page = await context.newPage()
    page.setDefaultTimeout(120_000)
    // Downloads as Blobs (the File System Access picker needs a person).
    await page.goto(pageUrl + '&blob-downloads')
    await page.waitForSelector('#map[data-state=ready]')
    await page.waitForSelector('#hex[data-state=ready]')

    await t.test('info equals qemu-img info --backing-chain --output=json', async () => {
      // Names are URLs on the page; qemu-img ran beside the files with relative names.
      const pageInfo = (await page.textContent('#info-json'))!.replaceAll(`${origin}/files${dir}/`, '')
      assert.deepEqual(JSON.parse(pageInfo), withoutActualSize(qemuInfo))
      // Members in qemu-img's order too.
      assert.equal(JSON.stringify(JSON.parse(pageInfo)), JSON.stringify(withoutActualSize(qemuInfo)))
      // The chain table: a row per layer (and the header), the snapshot and the bitmap named.
      const rows = await page.locator('#chain tr').allTextContents()
      assert.equal(rows.length, 3)
      assert.match(rows[1]!, /^0.*top\.qcow2qcow28388608.*base\.qcow2.*1 before .*b0 \(granularity 65536, auto\)$/)
    })

    await t.test('map equals qemu-img map --output=json, drawn with a legend', async () => {
      assert.equal(await page.textContent('#map-json'), qemuMap)
      const legend = (await page.textContent('#legend'))!
      for (const label of ['data, depth 0', 'data, depth 1', 'compressed', 'zeros', 'unallocated']) assert.ok(legend.includes(label), `legend has ${label}: ${legend}`)
      mkdirSync(ARTEFACTS, { recursive: true })
      await page.locator('#map').screenshot({ path: join(ARTEFACTS, 'web-map.png') })
      await page.screenshot({ path: join(ARTEFACTS, 'web-page.png'), fullPage: true })
      // The tooltip names the extent under the pointer: guest 2 MiB is the compressed cluster.
      const box = (await page.locator('#map').boundingBox())!
      const size = await page.locator('#map').evaluate((canvas) => { const c = canvas as unknown as { width: number; height: number }; return { w: c.width, h: c.height } })
      // The page's grid: 256 cells of 4 px a row, at most 128 rows, cells whole sectors.
      const cellBytes = Math.max(512, Math.ceil(8 * 1024 * 1024 / (256 * 128) / 512) * 512)
      const cell = (2 * 1024 * 1024) / cellBytes
      await page.mouse.move(box.x + (((cell % 256) * 4 + 2) * box.width) / size.w, box.y + ((Math.floor(cell / 256) * 4 + 2) * box.height) / size.h)
      const tip = (await page.textContent('#tooltip'))!
      assert.match(tip, /guest 0x200000 .*\nextent 0x200000, length 0x10000\ndepth 0: compressed/)
    })

    await t.test('the hex view shows the guest bytes at an offset', async () => {
      const offset = 2 * 1024 * 1024 + 100 // inside the compressed cluster
      await page.fill('#hex-offset', '0x' + offset.toString(16))
      await page.click('#hex-show')
      await page.waitForSelector(`#hex[data-state=ready][data-offset="${offset}"]`)
      assert.equal(await page.getAttribute('#hex', 'data-bytes'), raw.subarray(offset, offset + 256).toString('hex'))
    })

    await t.test('check shows qemu-img check', async () => {
      const qemuCheck = await runOk('qemu-img', ['check', 'top.qcow2'], { cwd: dir })
      await page.click('#check')
      await page.waitForSelector('#check-text[data-state=ready]')
      const text = (await page.textContent('#check-text'))!
      assert.ok(text.startsWith(qemuCheck), `${text}\n---\n${qemuCheck}`)
    })

    await t.test('the raw download is qemu-img convert -O raw', async () => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-raw')])
      assert.equal(download.suggestedFilename(), 'top.raw')
      assert.equal(sha256(readFileSync((await download.path())!)), sha256(raw))
    })

    await t.test('the qcow2 download has the same guest content and passes qemu-img check', async () => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-qcow2')])
      copyFileSync((await download.path())!, join(dir, 'downloaded.qcow2'))
      await runOk('qemu-img', ['check', 'downloaded.qcow2'], { cwd: dir })
      const compare = await run('qemu-img', ['compare', 'top.qcow2', 'downloaded.qcow2'], { cwd: dir })
      assert.equal(compare.code, 0, compare.stdout + compare.stderr)
    })

    await t.test('files dropped on the page open with no request for them', async () => {
      const dropped = await context.newPage()
      const requests: string[] = []
      dropped.on('request', (request) => requests.push(new URL(request.url()).pathname))
      await dropped.goto(origin + '/')
      // In either order: the page finds the top image (the one no other names as backing).
      await dropped.setInputFiles('#file', [join(dir, 'base.qcow2'), join(dir, 'top.qcow2')])
      await dropped.waitForSelector('#map[data-state=ready]')
      // Dropped files are named as qemu-img names them when run beside them.
      assert.deepEqual(JSON.parse((await dropped.textContent('#info-json'))!), withoutActualSize(qemuInfo))
      assert.equal(await dropped.textContent('#map-json'), qemuMap)
      assert.deepEqual(requests.filter((path) => path.startsWith('/files/')), [])
    })

    await t.test('an encrypted image opens once its passphrase is given', async () => {
      const encrypted = await context.newPage()
      await encrypted.goto(luksUrl)
      await encrypted.waitForSelector('#status[data-state=error]')
      await encrypted.fill('#passphrase', WEB_PASSPHRASE)
      await encrypted.click('#open-url')
      await encrypted.waitForSelector('#hex[data-state=ready]')
      assert.equal(await encrypted.getAttribute('#hex', 'data-bytes'), raw.subarray(0, 256).toString('hex'))
      assert.match((await encrypted.textContent('#info-text'))!, /encrypted: yes/)
    })
  } finally {
    await browser.close()
  }
  // Ctrl-C stops the server cleanly.
  const exited = new Promise<number | null>((done) => server!.once('exit', (code) => done(code)))
  server!.kill('SIGINT')
  assert.equal(await exited, 0)
  server = undefined
})
