// Partial writes into fresh qcow2 clusters (format/unit-writer.ts: no copy-on-write of zeros,
// as QEMU's handle_alloc_space) against the copy-on-write path and against QEMU: a seeded
// qemu-io script through qimg io gives the same file qemu-io writes, with no backing file, over
// a sparse backing file (reads zeros by block status: no copy) and over one of written zeros
// (read and copied); the guest data equals the script applied to raw, and qemu-img check is clean.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { needTools, runOk, sharedWorkDir, qimgInProcess as qimg } from '../helpers/oracle.js'
import { ioScript } from '../helpers/io-script.js'

const MiB = 1024 * 1024
const SIZE = 8 * MiB
const work = sharedWorkDir('qimg-oracle-fresh-', async () => {}, [])

interface Case {
  name: string
  options: string
  backing?: 'sparse' | 'written'
  seed: number
}

const CASES: Case[] = [
  { name: '64 KiB clusters', options: 'cluster_size=64k', seed: 1 },
  { name: '64 KiB clusters over a sparse raw backing file', options: 'cluster_size=64k', backing: 'sparse', seed: 2 },
  { name: '64 KiB clusters over a raw backing file of written zeros', options: 'cluster_size=64k', backing: 'written', seed: 3 },
  { name: '4 KiB clusters', options: 'cluster_size=4k', seed: 4 },
  { name: 'v2, 512-byte clusters over a sparse raw backing file', options: 'cluster_size=512,compat=0.10', backing: 'sparse', seed: 5 },
]

/** The script as qemu-io takes it. */
const commandArgs = (commands: readonly string[]) => commands.flatMap((c) => ['-c', c])

describe('partial writes into fresh clusters', () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const tag = `s${c.seed}`
      const create = async (file: string) => {
        const backing = c.backing ? ['-b', `${tag}.base.raw`, '-F', 'raw'] : []
        await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', c.options, ...backing, work.at(file), String(SIZE)])
      }
      if (c.backing === 'sparse') {
        writeFileSync(work.at(`${tag}.base.raw`), new Uint8Array(0))
        truncateSync(work.at(`${tag}.base.raw`), SIZE)
      } else if (c.backing === 'written') {
        writeFileSync(work.at(`${tag}.base.raw`), new Uint8Array(SIZE))
      }
      const ours = `${tag}.ours.qcow2`
      const theirs = `${tag}.theirs.qcow2`
      await create(ours)
      await create(theirs)
      const commands = ioScript(c.seed, SIZE, 60, 256)
      const r = await qimg(['io', '-f', 'qcow2', ...commandArgs(commands), work.at(ours)])
      assert.equal(r.code, 0, r.stderr)
      await runOk('qemu-io', ['-f', 'qcow2', ...commandArgs(commands), work.at(theirs)])
      assert.ok(Buffer.compare(readFileSync(work.at(ours)), readFileSync(work.at(theirs))) === 0, 'qimg io and qemu-io wrote different files')
      assert.equal(await runOk('qemu-img', ['check', work.at(ours)]).then((out) => out.split('\n')[0]), 'No errors were found on the image.')

      // The guest data against raw, without discards (a partial discard punches a hole in raw,
      // while qcow2 leaves partial clusters as they are).
      const writes = commands.filter((command) => !command.startsWith('discard'))
      const image = `${tag}.writes.qcow2`
      const raw = work.at(`${tag}.raw`)
      await create(image)
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', raw, String(SIZE)])
      assert.equal((await qimg(['io', '-f', 'qcow2', ...commandArgs(writes), work.at(image)])).code, 0)
      await runOk('qemu-io', ['-f', 'raw', ...commandArgs(writes), raw])
      assert.equal(await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', work.at(image), raw]), 'Images are identical.\n')
      assert.equal(await runOk('qemu-img', ['check', work.at(image)]).then((out) => out.split('\n')[0]), 'No errors were found on the image.')
    })
  }
})
