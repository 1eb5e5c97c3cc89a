// Oracle: s3:// against a real S3 API server (Swift + s3api, test/helpers/swift.ts). Uploads made
// by `qimg convert … s3://` are downloaded and judged by qemu-img (check, compare); s3:// inputs
// give what qemu-img says of the same image on disk; wrong credentials, a failing server and a
// killed upload leave no object.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer, request, type IncomingMessage, type Server } from 'node:http'
import { hasSwift, needSwift, startSwift, type SwiftServer } from '../helpers/swift.js'
import { hasTool, needTools, qimg, run, tempDir, QIMG } from '../helpers/oracle.js'
import { qemuImg, qemuIo } from './images.js'
import { S3Client, type S3Location } from '../../src/io/s3.js'
import { checkJsonProgress } from '../helpers/progress.js'

const BUCKET = 'qimg'
const dir = tempDir('qimg-oracle-s3-')
let swift: SwiftServer | undefined
let source = ''

before(async () => {
  if (!hasSwift() || !hasTool('qemu-img') || !hasTool('qemu-io')) return
  swift = await startSwift([BUCKET])
  source = dir.file('source.qcow2')
  await qemuImg(['create', '-f', 'qcow2', source, '100M'])
  await qemuIo(source, ['write -P 0x11 0 3M', 'write -P 0x22 50M 1M', 'write -z 60M 1M', 'write -P 0x33 99M 64k', 'write -P 0x44 104793600 64000'])
}, { timeout: 300_000 })
after(async () => {
  await swift?.stop()
  dir.cleanup()
})

const at = (key: string): S3Location => ({ bucket: BUCKET, key })

/** Downloads an object through a presigned URL (as a browser would). */
async function download(key: string, path: string): Promise<void> {
  const response = await fetch(await swift!.client.presign(at(key)))
  assert.equal(response.status, 200, `GET ${key}`)
  writeFileSync(path, new Uint8Array(await response.arrayBuffer()))
}

async function objectStatus(key: string): Promise<number> {
  const response = await swift!.client.request(at(key), { method: 'HEAD' })
  return response.status
}

/** Multipart uploads still open under `key` (ListMultipartUploads). */
async function openUploads(key: string): Promise<number> {
  const response = await swift!.client.request({ bucket: BUCKET, key: '' }, { method: 'GET', query: `uploads&prefix=${encodeURIComponent(key)}` })
  const body = await response.text()
  assert.equal(response.status, 200, body)
  return body.split('<Upload>').length - 1
}

const s3 = (key: string): string => `s3://${BUCKET}/${key}`
const withS3 = (env: Record<string, string> = {}): { env: Record<string, string> } => ({ env: { ...swift!.env, ...env } })

describe('s3:// (Swift s3api)', () => {
  for (const [format, options] of [['qcow2', []], ['qcow2', ['-o', 'cluster_size=4k']], ['qcow2', ['-o', 'cluster_size=2M,compat=0.10']], ['raw', []]] as const) {
    it(`convert -O ${format} ${options.join(' ')} up to S3 reads back equal`, { timeout: 300_000 }, async (t) => {
      if (!needSwift(t) || !needTools(t, 'qemu-img')) return
      const key = `up/${format}-${options.length}.img`
      const r = await qimg(['convert', '-O', format, ...options, source, s3(key)], withS3())
      assert.equal(r.code, 0, r.stderr)
      const local = dir.file(`down-${format}-${options.length}.img`)
      await download(key, local)
      if (format === 'qcow2') {
        const check = await run('qemu-img', ['check', local])
        assert.equal(check.code, 0, check.stdout + check.stderr)
        assert.match(check.stdout, /No errors were found/)
      }
      const compare = await run('qemu-img', ['compare', '-f', format, '-F', 'qcow2', local, source])
      assert.equal(compare.code, 0, compare.stdout + compare.stderr)
    })
  }

  it('convert … s3:// --progress=json: JSON lines of the upload; -p: qemu-img\'s bar', { timeout: 300_000 }, async (t) => {
    if (!needSwift(t) || !needTools(t, 'qemu-img')) return
    const json = await qimg(['convert', '--progress=json', '-O', 'qcow2', source, s3('up/progress.qcow2')], withS3())
    assert.equal(json.code, 0, json.stderr)
    const lines = checkJsonProgress(json.stderr, ['upload'])
    assert.equal(lines.at(-1)!.total, 100 * 1024 * 1024)
    const bar = await qimg(['convert', '-p', '-O', 'raw', source, s3('up/progress.raw')], withS3())
    assert.equal(bar.code, 0, bar.stderr)
    assert.match(bar.stdout, /^ {4}\(0\.00\/100%\)\r( {4}\(\d+\.\d\d\/100%\)\r)* {4}\(100\.00\/100%\)\r\n$/)
  })

  it('s3:// as the input of info, map and convert', { timeout: 300_000 }, async (t) => {
    if (!needSwift(t) || !needTools(t, 'qemu-img')) return
    const put = await swift!.client.request(at('in/source.qcow2'), { method: 'PUT', body: (await import('node:fs')).readFileSync(source) })
    assert.equal(put.status, 200)
    const info = await qimg(['info', '--output=json', s3('in/source.qcow2')], withS3())
    assert.equal(info.code, 0, info.stderr)
    const theirs = JSON.parse((await run('qemu-img', ['info', '--output=json', source])).stdout)
    const ours = JSON.parse(info.stdout)
    for (const key of ['virtual-size', 'format', 'cluster-size', 'format-specific']) assert.deepEqual(ours[key], theirs[key], key)
    assert.equal(ours.filename, s3('in/source.qcow2'))
    const map = await qimg(['map', '--output=json', s3('in/source.qcow2')], withS3())
    assert.equal(map.code, 0, map.stderr)
    assert.deepEqual(JSON.parse(map.stdout), JSON.parse((await run('qemu-img', ['map', '--output=json', source])).stdout))
    const raw = dir.file('from-s3.raw')
    const convert = await qimg(['convert', '-O', 'raw', s3('in/source.qcow2'), raw], withS3())
    assert.equal(convert.code, 0, convert.stderr)
    assert.equal((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, source])).code, 0)
    const missing = await qimg(['info', s3('in/none.qcow2')], withS3())
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /Could not open 's3:\/\/qimg\/in\/none\.qcow2': HTTP 404/)
  })

  it('wrong credentials give a clear error and make no object', { timeout: 300_000 }, async (t) => {
    if (!needSwift(t)) return
    const wrong = withS3({ AWS_SECRET_ACCESS_KEY: 'not-the-secret' })
    const info = await qimg(['info', s3('in/source.qcow2')], wrong)
    assert.equal(info.code, 1)
    assert.match(info.stderr, /Could not open 's3:\/\/qimg\/in\/source\.qcow2': HTTP 403 SignatureDoesNotMatch: .*\(check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN\)/)
    const up = await qimg(['convert', '-O', 'qcow2', source, s3('up/denied.qcow2')], wrong)
    assert.equal(up.code, 1)
    assert.match(up.stderr, /HTTP 403 SignatureDoesNotMatch/)
    assert.equal(await objectStatus('up/denied.qcow2'), 404)
    const none = await qimg(['info', s3('in/source.qcow2')], { env: { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' } })
    assert.match(none.stderr, /no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/)
  })

  it('a failing part aborts the upload: no object, no open upload', { timeout: 300_000 }, async (t) => {
    if (!needSwift(t)) return
    // Every attempt at part 3 fails with 503: the client retries, gives up and aborts.
    const proxy = await partProxy(swift!.endpoint, (part, response) => {
      if (part !== 3) return false
      response.writeHead(503).end('<Error><Code>SlowDown</Code><Message>injected</Message></Error>')
      return true
    })
    try {
      const key = 'up/failing.raw'
      const r = await qimg(['convert', '-O', 'raw', source, s3(key)], withS3({ AWS_ENDPOINT_URL: proxy.endpoint }))
      assert.equal(r.code, 1)
      assert.match(r.stderr, /Could not upload part 3 of 's3:\/\/qimg\/up\/failing\.raw': HTTP 503 SlowDown: injected/)
      assert.equal(await objectStatus(key), 404)
      assert.equal(await openUploads(key), 0)
    } finally {
      await proxy.close()
    }
  })

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`an upload killed (${signal}) leaves no object`, { timeout: 300_000 }, async (t) => {
      if (!needSwift(t)) return
      // Part 4 is held unanswered: the upload is certainly under way, and cannot end, when killed.
      let held: () => void = () => {}
      const holding = new Promise<void>((resolve) => { held = resolve })
      const proxy = await partProxy(swift!.endpoint, (part) => {
        if (part !== 4) return false
        held()
        return true
      })
      try {
        const key = `up/killed-${signal}.raw`
        const child = spawn(process.execPath, [QIMG, 'convert', '-O', 'raw', source, s3(key)], { env: { ...process.env, ...swift!.env, AWS_ENDPOINT_URL: proxy.endpoint }, stdio: 'ignore' })
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
        await holding
        child.kill(signal)
        const code = await exited
        if (signal === 'SIGTERM') assert.equal(code, 143)
        assert.equal(await objectStatus(key), 404)
        if (signal === 'SIGTERM') assert.equal(await openUploads(key), 0)
      } finally {
        await proxy.close()
      }
    })
  }
})

describe('S3 client', () => {
  it('presigned URLs read ranges without credentials', { timeout: 300_000 }, async (t) => {
    if (!needSwift(t)) return
    const body = new Uint8Array(1000).map((_, i) => i & 0xff)
    assert.equal((await swift!.client.request(at('small.bin'), { method: 'PUT', body })).status, 200)
    const url = await new S3Client(swift!.config).presign(at('small.bin'), 60)
    assert.doesNotMatch(url, /testing/)
    const response = await fetch(url, { headers: { range: 'bytes=10-19' } })
    assert.equal(response.status, 206)
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), body.subarray(10, 20))
  })
})

/**
 * A proxy in front of the S3 server: `intercept` may answer (or hold) an UploadPart request by its
 * part number itself (true); everything else is passed on unchanged (Host included, so SigV4
 * signatures made for the proxy's address still verify).
 */
async function partProxy(target: string, intercept: (part: number, response: import('node:http').ServerResponse) => boolean): Promise<{ endpoint: string; close(): Promise<void> }> {
  const upstream = new URL(target)
  const server: Server = createServer((req: IncomingMessage, res) => {
    const part = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('partNumber') ?? 0)
    if (part && intercept(part, res)) {
      req.resume()
      return
    }
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    forward.on('error', () => res.destroy())
    req.pipe(forward)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
