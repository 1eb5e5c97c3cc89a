// Crash safety: a child process (writer-process.ts) writes into a qcow2 image through the library
// and is killed with SIGKILL at a random moment, many times per kind of image. After each kill:
// qemu-img check finds no corruption (leaks are allowed; with the dirty bit, stale refcounts as
// QEMU leaves them), `qimg check -r leaks` (`-r all` when the dirty bit is set) makes the image clean for both tools, every operation before the last
// completed flush reads back intact (bytes touched by later, unflushed operations may hold either
// value), and internal snapshots taken before are untouched. The next round continues on the
// repaired image.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { run as runCli } from '../../src/cli/main.js'
import { needTools, run, tempDir } from '../helpers/oracle.js'
import { KiB, MiB, create, prng, qemuImg, qemuIo } from '../oracle/images.js'
import { operations } from './writer-process.js'

const root = tempDir('qimg-crash-')
after(() => root.cleanup())

const WRITER = join(import.meta.dirname, 'writer-process.js')

interface Config {
  name: string
  options: Record<string, string | number>
  clusterSize: number
  /** Take an internal snapshot (qemu-img) before the first round. */
  snapshot?: boolean
  kills: number
}

const CONFIGS: Config[] = [
  { name: 'plain (64 KiB clusters)', options: {}, clusterSize: 64 * KiB, kills: 7 },
  { name: 'lazy_refcounts=on', options: { lazy_refcounts: 'on' }, clusterSize: 64 * KiB, kills: 7 },
  { name: 'internal snapshots present', options: { cluster_size: 16 * KiB }, clusterSize: 16 * KiB, snapshot: true, kills: 6 },
  { name: '512-byte clusters', options: { cluster_size: 512 }, clusterSize: 512, kills: 6 },
  { name: 'extended_l2=on', options: { extended_l2: 'on', cluster_size: 32 * KiB }, clusterSize: 32 * KiB, kills: 6 },
]

/** Runs the writer until SIGKILL `delay` ms after it is ready; returns its stdout lines. */
function runUntilKilled(path: string, seed: number, delay: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, path, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timer: NodeJS.Timeout | undefined
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text
      if (!timer && stdout.startsWith('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), delay)
    })
    child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (signal !== 'SIGKILL') reject(new Error(`writer exited by itself (code ${code}): ${stderr}`))
      else resolve(stdout.split('\n').filter(Boolean))
    })
  })
}

async function qimgCheck(path: string, args: string[]): Promise<{ code: number; out: string }> {
  let out = ''
  const code = await runCli(['check', ...args, path], { out: (t) => { out += t }, err: (t) => { out += t } })
  return { code, out }
}

async function readRaw(path: string, out: string, snapshot?: string): Promise<Buffer> {
  await qemuImg(['convert', ...(snapshot ? ['-l', snapshot] : []), '-O', 'raw', path, out])
  return readFileSync(out)
}

const dirtyBit = (path: string): boolean => readFileSync(path).readUInt32BE(4) >= 3 && (readFileSync(path).readBigUInt64BE(72) & 1n) === 1n

describe('SIGKILL while writing', { concurrency: 2 }, () => {
  for (const [n, config] of CONFIGS.entries()) {
    it(config.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const dir = mkdtempSync(join(root.path, 'crash-'))
      const path = join(dir, 'img.qcow2')
      const size = 4 * MiB
      await create(dir, 'img.qcow2', size, { cluster_size: config.clusterSize, ...config.options })
      await qemuIo(path, ['write -P 0x5a 0 1M', 'write -P 0x5b 2M 512k', `write -z 3M ${config.clusterSize}`])
      let snapshotContent: Buffer | undefined
      if (config.snapshot) {
        await qemuImg(['snapshot', '-c', 'before', path])
        snapshotContent = await readRaw(path, join(dir, 'snap.raw'), 'before')
      }
      let model = await readRaw(path, join(dir, 'start.raw'))
      const random = prng(7 + n)
      for (let round = 0; round < config.kills; round++) {
        const seed = 1000 * (n + 1) + round
        const what = `${config.name}, round ${round} (seed ${seed})`
        const delay = 20 + Math.floor(random() * 280)
        const lines = await runUntilKilled(path, seed, delay)
        let flushed = -1
        let started = -1
        for (const line of lines) {
          const [word, index] = line.split(' ')
          if (word === 'flushed') flushed = Number(index)
          else if (word === 'op') started = Number(index)
        }
        // What must be on disk: operations 0..flushed. Later ones may be partly there.
        const expected = Buffer.from(model)
        const touched = new Uint8Array(size)
        let i = 0
        for (const op of operations(seed, size, config.clusterSize)) {
          if (i > started) break
          if (i <= flushed) {
            if (op.kind === 'write') expected.fill(op.pattern, op.offset, op.offset + op.length)
            else expected.fill(0, op.offset, op.offset + op.length)
          } else {
            touched.fill(1, op.offset, op.offset + op.length)
          }
          i++
        }

        const before = await run('qemu-img', ['check', path])
        // With the dirty bit set, refcounts may lag (lazy refcounts, as QEMU leaves them): every
        // error is a cluster in use once whose count is still 0, nothing else.
        const stale = dirtyBit(path) && before.code === 2 && before.stderr.split('\n').filter((l) => l.startsWith('ERROR'))
          .every((l) => /^ERROR (cluster \d+ refcount=0 reference=1|OFLAG_COPIED data cluster: l2_entry=\w+ refcount=0)$/.test(l))
        assert.ok(before.code === 0 || before.code === 3 || stale, `${what}: qemu-img check after the kill (exit ${before.code}):\n${before.stdout}${before.stderr}`)
        // Exit 0: after the repair, qimg's own double check found the image clean.
        const repair = await qimgCheck(path, ['-r', dirtyBit(path) ? 'all' : 'leaks'])
        assert.equal(repair.code, 0, `${what}: qimg check -r:\n${repair.out}`)
        const afterRepair = await run('qemu-img', ['check', path])
        assert.equal(afterRepair.code, 0, `${what}: qemu-img check after qimg's repair:\n${afterRepair.stdout}${afterRepair.stderr}`)

        const actual = await readRaw(path, join(dir, 'now.raw'))
        assert.equal(actual.length, size)
        for (let b = 0; b < size; b++) {
          if (actual[b] !== expected[b] && !touched[b]) {
            const history: string[] = []
            let k = 0
            for (const op of operations(seed, size, config.clusterSize)) {
              if (k > started) break
              if (b >= op.offset && b < op.offset + op.length) history.push(`#${k} ${op.kind} ${op.offset}+${op.length} pattern ${op.pattern}`)
              k++
            }
            assert.fail(`${what}: byte ${b} (0x${b.toString(16)}) is ${actual[b]}, expected ${expected[b]} (${flushed + 1} operations flushed, ${started + 1} started); operations on it: ${history.slice(-4).join('; ')}`)
          }
        }
        if (snapshotContent) assert.ok(snapshotContent.equals(await readRaw(path, join(dir, 'snap.raw'), 'before')), `${what}: snapshot 'before' changed`)
        model = actual
      }
    })
  }
})
