// A real S3 API server for tests: OpenStack Swift (Debian's swift-* packages) with its s3api
// middleware and tempauth, one-device rings, everything in a temporary directory and on free
// loopback ports, run as the current user. Credentials: test:tester / testing.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { S3Client, type S3Config } from '../../src/io/s3.js'
import { hasTool, runOk, tempDir } from './oracle.js'
import { freePort } from './port.js'

const PROGRAMS = ['swift-ring-builder', 'swift-proxy-server', 'swift-account-server', 'swift-container-server', 'swift-object-server']

/** True when Swift's programs are on PATH. */
export function hasSwift(): boolean {
  return PROGRAMS.every(hasTool)
}

/** True when Swift is installed; otherwise skips the test (locally) or throws (CI). */
export function needSwift(t: TestContext): boolean {
  const missing = PROGRAMS.filter((p) => !hasTool(p))
  if (missing.length === 0) return true
  if (process.env.CI) throw new Error(`Swift missing under CI: ${missing.join(', ')}`)
  t.skip(`no S3 server: ${missing.join(', ')} not installed (apt-get install swift swift-proxy swift-account swift-container swift-object)`)
  return false
}

/** A running Swift: its S3 endpoint, the environment a qimg process needs, and a client. */
export interface SwiftServer {
  endpoint: string
  config: S3Config
  /** AWS_* variables for a child process. */
  env: Record<string, string>
  client: S3Client
  stop(): Promise<void>
}

const serverConf = (kind: string, port: number, dir: string): string => `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${userInfo().username}
swift_dir = ${dir}
devices = ${join(dir, 'srv')}
mount_check = false
log_level = WARNING
[pipeline:main]
pipeline = ${kind}-server
[app:${kind}-server]
use = egg:swift#${kind}
[${kind}-replicator]
[${kind}-updater]
[${kind}-auditor]
`

// tempauth needs a cache (memcache_servers points nowhere: every lookup misses, which it survives);
// s3api's multipart upload is built on slo.
const proxyConf = (port: number, dir: string): string => `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${userInfo().username}
swift_dir = ${dir}
log_level = WARNING
[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:s3api]
use = egg:swift#s3api
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:1
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
`

/** Starts Swift with one bucket per name in `buckets`; waits (bounded) until it answers. */
export async function startSwift(buckets: readonly string[]): Promise<SwiftServer> {
  const dir = tempDir('qimg-swift-')
  mkdirSync(join(dir.path, 'srv', 'd1'), { recursive: true })
  writeFileSync(join(dir.path, 'swift.conf'), '[swift-hash]\nswift_hash_path_suffix = qimgtest\nswift_hash_path_prefix = qimgtest\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n')
  const children: ChildProcess[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
    })))
    dir.cleanup()
  }
  try {
    for (const kind of ['account', 'container', 'object']) {
      const port = await freePort()
      const builder = join(dir.path, `${kind}.builder`)
      await runOk('swift-ring-builder', [builder, 'create', '4', '1', '1'])
      await runOk('swift-ring-builder', [builder, 'add', `r1z1-127.0.0.1:${port}/d1`, '100'])
      await runOk('swift-ring-builder', [builder, 'rebalance'])
      writeFileSync(join(dir.path, `${kind}-server.conf`), serverConf(kind, port, dir.path))
    }
    const proxyPort = await freePort()
    writeFileSync(join(dir.path, 'proxy-server.conf'), proxyConf(proxyPort, dir.path))
    for (const kind of ['account', 'container', 'object', 'proxy']) {
      children.push(spawn(`swift-${kind}-server`, [join(dir.path, `${kind}-server.conf`)], { stdio: 'ignore' }))
    }
    const endpoint = `http://127.0.0.1:${proxyPort}`
    const config: S3Config = { accessKeyId: 'test:tester', secretAccessKey: 'testing', region: 'us-east-1', endpoint, attempts: 1 }
    const client = new S3Client(config)
    // Ready once a bucket can be made: the proxy and the three storage servers all answer.
    // Bounded: at most 240 tries 250 ms apart (a minute on a loaded machine).
    for (const [i, bucket] of buckets.entries()) {
      for (let attempt = 1; ; attempt++) {
        const status = await client.request({ bucket, key: '' }, { method: 'PUT' }).then((r) => r.status, () => 0)
        if (status === 200) break
        if (attempt >= 240 || children.some((c) => c.exitCode !== null)) throw new Error(`Swift did not start (bucket ${i}: last status ${status})`)
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
    }
    const env = { AWS_ACCESS_KEY_ID: config.accessKeyId, AWS_SECRET_ACCESS_KEY: config.secretAccessKey, AWS_REGION: config.region, AWS_ENDPOINT_URL: endpoint }
    return { endpoint, config, env, client: new S3Client({ ...config, attempts: 5 }), stop }
  } catch (e) {
    await stop()
    throw e
  }
}
