// The CLI reads http(s):// images like qemu-img's curl driver (qemu-block-extra): info (JSON and
// the human backing chain), map and convert -O raw of every image kind, over one range server,
// give what qemu-img gives through curl.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, qimg, runOk, sharedWorkDir } from '../helpers/oracle.js'
import { startRangeServer, type RangeServer } from '../helpers/range-server.js'
import { makeWebImages, type WebImage } from '../helpers/web-images.js'

const CURL_MODULE = '/usr/lib/x86_64-linux-gnu/qemu/block-curl.so'

let images: WebImage[] = []
const work = sharedWorkDir('qimg-http-cli-', async (dir) => {
  images = (await makeWebImages(dir)).filter((image) => image.secret === undefined)
})
let server: RangeServer
before(async () => { server = await startRangeServer(work.dir) })
after(() => server.close())

function needCurl(t: Parameters<typeof needTools>[0]): boolean {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return false
  if (existsSync(CURL_MODULE)) return true
  if (process.env.CI) throw new Error('qemu-img curl driver missing under CI (apt-get install qemu-block-extra)')
  t.skip('qemu-img curl driver not installed (apt-get install qemu-block-extra)')
  return false
}

test('info and map of remote images match qemu-img through curl', { timeout: 600_000 }, async (t) => {
  if (!needCurl(t)) return
  assert.ok(work.ready())
  for (const image of images) {
    const url = `${server.url}/${image.file}`
    for (const args of [['info', '--output=json', url], ['info', '--backing-chain', url], ['map', '--output=json', url]]) {
      const ours = await qimg(args)
      assert.equal(ours.code, 0, ours.stderr)
      assert.equal(ours.stdout, await runOk('qemu-img', args), `${image.name}: ${args.join(' ')}`)
    }
  }
})

test('convert -O raw of remote images gives qemu-img\'s raw', { timeout: 600_000 }, async (t) => {
  if (!needCurl(t)) return
  for (const image of images) {
    const out = join(work.dir, `${image.name}.remote.raw`)
    const r = await qimg(['convert', '-O', 'raw', `${server.url}/${image.file}`, out])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(readFileSync(out).equals(readFileSync(join(work.dir, image.raw))), image.name)
  }
})

test('a missing remote image and a server without ranges fail as qemu-img does', async (t) => {
  if (!needCurl(t)) return
  const missing = await qimg(['info', `${server.url}/nothing.qcow2`])
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /^qimg: Could not open '.*nothing\.qcow2': .*HTTP 404/m)
  const plain = await startRangeServer(work.dir, { noRanges: true })
  try {
    const r = await qimg(['info', `${plain.url}/plain.qcow2`])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /byte-range/)
  } finally {
    await plain.close()
  }
})
