// Image builders for the oracle tests: every kind of QCOW2 image QEMU makes, built with the real
// qemu-img / qemu-io (the oracle), plus helpers to get qemu-img's view of an image.
import { prng } from '../helpers/prng.js'
export { prng }
import { closeSync, fsyncSync, openSync, readdirSync, readSync, writeFileSync, writeSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { run as runCli } from '../../src/cli/main.js'
import { qimg, run, runOk, type RunResult } from '../helpers/oracle.js'

export const KiB = 1024
export const MiB = 1024 * KiB

/** An image as the tools are told to open it: `file` relative to `cwd` (or absolute). */
export interface ImageRef {
  /** Directory the tools run in. */
  cwd: string
  /** The image name passed on the command line. */
  file: string
  /**
   * The relative name is the point of the case (relative backing names resolved from another
   * directory): the tools get `file` as is and qimg runs as a child process in `cwd`. Otherwise
   * every tool gets the absolute path and qimg's CLI runs in this process (same code, no
   * process start: the matrix stays fast).
   */
  relative?: boolean
}

/** Absolute path of an image. */
export function pathOf(ref: ImageRef): string {
  return isAbsolute(ref.file) ? ref.file : join(ref.cwd, ref.file)
}

/** fsyncs every file under `dir`, so delayed allocation is settled and st_blocks stays put. */
export function syncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      syncTree(path)
    } else if (entry.isFile()) {
      const fd = openSync(path, 'r')
      try {
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
    }
  }
}

/**
 * Builds a case in `dir` and names it as the tools will (absolute unless `relative`). With
 * `sync`, the files are fsynced first: where `actual-size` (st_blocks) is compared exactly, the
 * filesystem must not allocate extent-tree blocks between two stat calls as it writes back.
 */
export async function buildImage(image: ImageCase, dir: string, options: { sync?: boolean } = {}): Promise<ImageRef> {
  const ref = await image.build(dir)
  if (options.sync) syncTree(dir)
  return ref.relative ? ref : { ...ref, file: pathOf(ref) }
}

/** Runs the qimg CLI on behalf of `ref`: in-process for absolute names, else spawned in `ref.cwd`. */
export async function qimgFor(ref: ImageRef, args: readonly string[]): Promise<RunResult> {
  if (ref.relative) return qimg(args, { cwd: ref.cwd })
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, { out: (text) => { stdout += text }, err: (text) => { stderr += text } })
  return { stdout, stderr, code }
}

/** Runs qemu-img on behalf of `ref` (in `ref.cwd`), never throwing. */
export function qemuImgFor(ref: ImageRef, args: readonly string[]): Promise<RunResult> {
  return run('qemu-img', args, { cwd: ref.cwd })
}

/** One image of the matrix. */
export interface ImageCase {
  name: string
  /** Builds the image inside `dir` (a fresh directory). */
  build(dir: string): Promise<ImageRef>
  /** Internal snapshots to read besides the active state, by name. */
  snapshots?: string[]
  /** What `qemu-img info --output=json` must show, proving the builder made the intended image. */
  expect?: RegExp[]
  /** The same for `qemu-img map --output=json`. */
  expectMap?: RegExp[]
}

/** A map entry of compressed data: data without an offset. */
const COMPRESSED_ENTRY = /"data": true\}/
/** A map entry of a zero cluster in the top image. */
const ZERO_ENTRY = /"depth": 0, "present": true, "zero": true, "data": false/

/** Runs qemu-img in `cwd` and returns stdout, throwing on failure. */
export function qemuImg(args: readonly string[], cwd?: string): Promise<string> {
  return runOk('qemu-img', args, cwd === undefined ? {} : { cwd })
}

/** Runs qemu-io commands (`write -P 0x11 0 64k`, …) on an image, in order, in one process. */
export function qemuIo(file: string, commands: readonly string[], options: { format?: string; cwd?: string } = {}): Promise<string> {
  const args = ['-f', options.format ?? 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]
  return runOk('qemu-io', args, options.cwd === undefined ? {} : { cwd: options.cwd })
}

/**
 * Runs qemu-io commands ending in `abort`, which kills qemu-io with SIGABRT (no core file) and
 * leaves the image exactly as the crash did (lazy refcounts: dirty bit set).
 */
export async function qemuIoAbort(file: string, commands: readonly string[], cwd: string): Promise<void> {
  const args = ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), '-c', 'abort', file]
  const r = await run('sh', ['-c', 'ulimit -c 0; qemu-io "$@" >/dev/null 2>&1; exit 0', 'sh', ...args], { cwd })
  if (r.code !== 0) throw new Error(`qemu-io abort run failed: ${r.stderr}`)
}

/** Creation options of a qcow2 image (`-o key=value,…`), in order. */
export type CreateOptions = Record<string, string | number | undefined>

/** `qemu-img create -f FMT [-o …] [-b B -F BF] FILE [SIZE]` in `dir`. */
export async function create(dir: string, file: string, size: number | undefined, options: CreateOptions = {}, backing?: { file: string; format: string }, format = 'qcow2'): Promise<void> {
  const opts = Object.entries(options).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(',')
  const args = ['create', '-q', '-f', format]
  if (opts) args.push('-o', opts)
  if (backing) args.push('-b', backing.file, '-F', backing.format)
  args.push(file)
  if (size !== undefined) args.push(String(size))
  await qemuImg(args, dir)
}


/**
 * A raw image mixing what compression meets in practice: 4 KiB blocks of random bytes (stored
 * uncompressed by QEMU), of repeated text (compressible), of a single byte, and of zeros.
 */
export function writePatternedRaw(path: string, size: number, seed = 1): void {
  const random = prng(seed)
  const data = Buffer.alloc(size)
  const text = Buffer.from('qimg reads every QCOW2 image qemu writes. ')
  for (let block = 0; block * 4096 < size; block++) {
    const at = block * 4096
    const end = Math.min(size, at + 4096)
    const kind = Math.floor(random() * 4)
    if (kind === 0) for (let i = at; i < end; i++) data[i] = Math.floor(random() * 256)
    else if (kind === 1) for (let i = at; i < end; i++) data[i] = text[(i + block) % text.length]!
    else if (kind === 2) data.fill(block & 0xff, at, end)
  }
  writeFileSync(path, data)
}

/** Sets incompatible feature bits (header bytes 72-79) by poking the file, as iotests do. */
export function setIncompatibleBits(path: string, bits: bigint): void {
  const fd = openSync(path, 'r+')
  try {
    const field = Buffer.alloc(8)
    readSync(fd, field, 0, 8, 72)
    field.writeBigUInt64BE(field.readBigUInt64BE(0) | bits)
    writeSync(fd, field, 0, 8, 72)
  } finally {
    closeSync(fd)
  }
}

/** qemu-img's guest content of an image (optionally at a snapshot): `convert -O raw` to `out`. */
export async function qemuRawFile(ref: ImageRef, out: string, snapshotArgs: string[] = []): Promise<string> {
  await qemuImg(['convert', ...snapshotArgs, '-O', 'raw', ref.file, out], ref.cwd)
  return out
}

/** Offset of the first differing byte, or -1; a length difference counts at the shorter end. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  const chunk = 64 * KiB
  for (let at = 0; at < n; at += chunk) {
    const end = Math.min(n, at + chunk)
    if (Buffer.compare(a.subarray(at, end), b.subarray(at, end)) === 0) continue
    for (let i = at; i < end; i++) if (a[i] !== b[i]) return i
  }
  return a.length === b.length ? -1 : n
}

/** Runs `jobs` with at most `limit` in flight; results in order. */
export async function pool<T>(limit: number, jobs: readonly (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(jobs.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++
      results[i] = await jobs[i]!()
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker))
  return results
}

// ---------------------------------------------------------------------------------------------
// The matrix

/** qemu-io commands that write a recognisable mix into an image of `size` bytes with `cs` clusters. */
function standardWrites(cs: number, size: number, l2Coverage: number): string[] {
  const cmds = [
    `write -P 0x11 0 ${Math.max(512, cs / 2)}`, // part of the first cluster
    // unaligned, across one or more cluster boundaries
    cs > 1000 ? `write -P 0x22 ${cs - 1000} ${Math.min(cs, 64 * KiB) + 2000}` : `write -P 0x22 100 ${3 * cs}`,
    `write -P 0x44 ${size - 5000} 5000`, // unaligned tail of the disk
  ]
  // Across L2 table boundaries (several tables when clusters are small).
  for (let k = 1; k <= 6 && k * l2Coverage < size; k++) cmds.push(`write -P 0x${(0x30 + k).toString(16)} ${k * l2Coverage - 1536 - k} ${3072 + 2 * k}`)
  return cmds
}

/** Clusters of `cs` bytes: at least 8 clusters and 4 MiB, 9 MiB where an L2 boundary is near. */
function clusterCase(cs: number): ImageCase {
  const coverage = cs * (cs / 8)
  const size = coverage === 8 * MiB ? 9 * MiB : Math.max(4 * MiB, 8 * cs)
  const clusters = size / cs
  return {
    name: `cluster_size=${cs}`,
    expect: [new RegExp(`"cluster-size": ${cs}\\b`)],
    expectMap: [COMPRESSED_ENTRY, ZERO_ENTRY],
    async build(dir) {
      await create(dir, 'img.qcow2', size, { cluster_size: cs })
      const half = Math.floor(clusters / 2) * cs
      await qemuIo('img.qcow2', [
        // One compressed cluster first (QEMU compresses only into unallocated clusters), clear of
        // the L2-boundary writes so that it stays compressed.
        `write -c -P 0x5a ${Math.min(Math.floor((clusters * 3) / 4) + 3, clusters - 2) * cs} ${cs}`,
        ...standardWrites(cs, size, coverage),
        `write -z ${cs} ${cs}`, // zero cluster over data
        `write -z ${half} ${2 * cs}`, // zero clusters over nothing
        `write -P 0x66 ${half + 700} 100`, // small write into a zero cluster
      ], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** compat and refcount width. */
function refcountCase(compat: string, refcountBits: number): ImageCase {
  return {
    name: `compat=${compat} refcount_bits=${refcountBits}`,
    expect: [new RegExp(`"compat": "${compat}"`), new RegExp(`"refcount-bits": ${refcountBits}\\b`)],
    async build(dir) {
      await create(dir, 'img.qcow2', 2 * MiB, { compat, refcount_bits: refcountBits, cluster_size: 4096 })
      await qemuIo('img.qcow2', [
        ...standardWrites(4096, 2 * MiB, 2 * MiB),
        'write -z 100k 12k', 'write -z 1100k 8k', 'write -z 5000 3000',
        'write -P 0x77 512k 64k', 'discard 520k 16k', 'write -c -P 0x78 768k 8k',
      ], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** `write -c` with a compression type, including data that does not compress. */
function compressedWriteCase(type: 'zlib' | 'zstd', cs: number): ImageCase {
  const size = Math.max(4 * MiB, 8 * cs)
  return {
    name: `write -c compression_type=${type} cluster_size=${cs}`,
    expect: [new RegExp(`"compression-type": "${type}"`), new RegExp(`"cluster-size": ${cs}\\b`)],
    expectMap: [COMPRESSED_ENTRY],
    async build(dir) {
      const random = prng(cs)
      writeFileSync(join(dir, 'random.bin'), Buffer.from(Array.from({ length: cs }, () => Math.floor(random() * 256))))
      await create(dir, 'img.qcow2', size, { cluster_size: cs, compression_type: type })
      await qemuIo('img.qcow2', [
        // Compressed writes go to unallocated clusters only (QEMU refuses others).
        `write -c -P 0x5a 0 ${4 * cs}`,
        `write -c -P 0x5b ${4 * cs} ${cs}`,
        `write -c -P 0 ${5 * cs} ${cs}`,
        `write -c -s random.bin ${6 * cs} ${cs}`, // incompressible: QEMU stores it uncompressed
        `write -P 0x5c ${7 * cs + 500} ${cs / 2}`, // normal data next to compressed
      ], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** `qemu-img convert -c` of a patterned raw image. */
function convertCompressedCase(type: 'zlib' | 'zstd', cs: number): ImageCase {
  return {
    name: `convert -c compression_type=${type} cluster_size=${cs}`,
    expect: [new RegExp(`"compression-type": "${type}"`), new RegExp(`"cluster-size": ${cs}\\b`)],
    expectMap: [COMPRESSED_ENTRY],
    async build(dir) {
      // 1 MiB at 512-byte clusters is already 2048 compressed clusters.
      writePatternedRaw(join(dir, 'src.raw'), cs === 512 ? 1 * MiB : 4 * MiB, cs)
      await qemuImg(['convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs},compression_type=${type}`, 'src.raw', 'img.qcow2'], dir)
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** Zero clusters and discards, v3 and v2. */
function zeroCase(compat: string): ImageCase {
  return {
    name: `zero clusters and discard compat=${compat}`,
    // v3: zero clusters, one keeping its host cluster (ZERO_ALLOC: an offset); v2 has no zero flag.
    expectMap: compat === '1.1' ? [ZERO_ENTRY, /"zero": true, "data": false, "offset"/] : [],
    async build(dir) {
      await create(dir, 'img.qcow2', 4 * MiB, { compat })
      await qemuIo('img.qcow2', [
        'write -P 0x11 0 1M',
        'write -z 64k 64k', // allocated → zero (keeps its offset)
        'write -z -u 192k 128k', // allocated → zero, unmapped
        'write -z 2M 256k', // unallocated → zero
        'write -z 3000 1000', // partial cluster: explicit zeros
        'discard 512k 128k',
        'discard 3M 64k',
        'write -P 0x12 2M 4k', // data into a zero cluster
      ], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** Zero clusters and discards over a backing file (must hide the backing data). */
function zeroOverBackingCase(compat: string): ImageCase {
  return {
    name: `zero clusters and discard over backing compat=${compat}`,
    expectMap: compat === '1.1' ? [ZERO_ENTRY, /"depth": 1/] : [/"depth": 1/],
    async build(dir) {
      await create(dir, 'base.qcow2', 2 * MiB, { compat, cluster_size: 32 * KiB })
      await qemuIo('base.qcow2', ['write -P 0xbb 0 2M'], { cwd: dir })
      await create(dir, 'img.qcow2', 2 * MiB, { compat, cluster_size: 32 * KiB }, { file: 'base.qcow2', format: 'qcow2' })
      await qemuIo('img.qcow2', [
        'write -P 0x11 0 256k', 'write -z 32k 32k', 'write -z 512k 64k', 'write -z 1000 500',
        'discard 128k 64k', 'discard 1M 96k', 'write -z -u 192k 32k',
      ], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** Extended L2 entries with subcluster writes over a backing file (or none). */
function extendedL2Case(cs: number, withBacking: boolean): ImageCase {
  const sub = cs / 32
  return {
    name: `extended_l2=on cluster_size=${cs}${withBacking ? ' over backing' : ''}`,
    expect: [/"extended-l2": true/, ...(withBacking ? [/"backing-filename": "base.raw"/] : [])],
    // Subclusters of one cluster answer differently (`write -z 8k 2k` alone), some from the backing file.
    expectMap: [new RegExp(`"start": 8192, "length": 2048, "depth": 0, "present": true, "zero": true`), ...(withBacking ? [/"depth": 1/] : [])],
    async build(dir) {
      let backing: { file: string; format: string } | undefined
      if (withBacking) {
        await create(dir, 'base.raw', 2 * MiB, {}, undefined, 'raw')
        await qemuIo('base.raw', ['write -P 0xbb 0 2M'], { format: 'raw', cwd: dir })
        backing = { file: 'base.raw', format: 'raw' }
      }
      await create(dir, 'img.qcow2', 2 * MiB, { cluster_size: cs, extended_l2: 'on' }, backing)
      await qemuIo('img.qcow2', [
        'write -P 1 4k 2k', 'write -z 8k 2k', `write -P 2 ${cs + 3 * sub} ${sub}`,
        `write -P 3 ${2 * cs + sub / 2} ${sub}`, // half subclusters at both ends
        `write -z ${4 * cs} ${cs}`, `write -P 4 ${6 * cs} ${2 * cs}`, `discard ${6 * cs + 4 * sub} ${4 * sub}`,
        `write -z ${6 * cs + 10 * sub} ${2 * sub}`, `write -c -P 5 ${10 * cs} ${cs}`,
        `write -P 6 ${12 * cs + 31 * sub} ${2 * sub}`, // last subcluster of one cluster, first of the next
      ], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** Preallocation modes. */
function preallocationCase(mode: string, extra: CreateOptions = {}): ImageCase {
  const label = Object.entries(extra).map(([k, v]) => ` ${k}=${v}`).join('')
  return {
    name: `preallocation=${mode}${label}`,
    async build(dir) {
      await create(dir, 'img.qcow2', 3 * MiB, { preallocation: mode, cluster_size: 64 * KiB, ...extra })
      await qemuIo('img.qcow2', ['write -P 0x11 100k 200k', 'write -z 1M 128k', 'write -P 0x12 2M 3k', 'discard 2560k 64k'], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** raw base ← qcow2 mid ← qcow2 top, each layer its own pattern. */
async function buildChain(dir: string): Promise<void> {
  await create(dir, 'base.raw', 4 * MiB, {}, undefined, 'raw')
  await qemuIo('base.raw', ['write -P 0xb0 0 4M', 'write -P 0xb1 1M 512k'], { format: 'raw', cwd: dir })
  await create(dir, 'mid.qcow2', 4 * MiB, { cluster_size: 16 * KiB }, { file: 'base.raw', format: 'raw' })
  await qemuIo('mid.qcow2', ['write -P 0xa0 64k 1M', 'write -z 2M 256k', 'discard 3M 64k', 'write -P 0xa1 3500k 5k'], { cwd: dir })
  await create(dir, 'top.qcow2', undefined, { cluster_size: 64 * KiB }, { file: 'mid.qcow2', format: 'qcow2' })
  await qemuIo('top.qcow2', ['write -P 0x70 0 100k', 'write -P 0x71 1M 64k', 'write -z 2100k 100k', 'write -P 0x72 4000k 96k'], { cwd: dir })
}

/** The 3-deep chain (used by read, info/map and `info --backing-chain` tests). */
export const CHAIN_CASE: ImageCase = {
  name: '3-deep chain raw ← qcow2 ← qcow2',
  async build(dir) {
    await buildChain(dir)
    return { cwd: dir, file: 'top.qcow2' }
  },
}

/** The chain in a subdirectory, opened by a relative path from the parent directory. */
export const RELATIVE_CHAIN_CASE: ImageCase = {
  name: '3-deep chain in a subdirectory, relative names, cwd elsewhere',
  async build(dir) {
    const sub = join(dir, 'images', 'vm')
    await mkdir(sub, { recursive: true })
    await buildChain(sub)
    return { cwd: dir, file: 'images/vm/top.qcow2', relative: true }
  },
}

/** A backing name with `..` in it, the image opened from yet another directory. */
const DOTDOT_BACKING_CASE: ImageCase = {
  name: 'backing name ../base/base.qcow2, opened from a sibling directory',
  async build(dir) {
    await mkdir(join(dir, 'base'))
    await mkdir(join(dir, 'over'))
    await mkdir(join(dir, 'elsewhere'))
    await create(join(dir, 'base'), 'base.qcow2', 2 * MiB, { cluster_size: 4096 })
    await qemuIo('base.qcow2', ['write -P 0xbb 0 2M'], { cwd: join(dir, 'base') })
    await create(join(dir, 'over'), 'img.qcow2', 2 * MiB, {}, { file: '../base/base.qcow2', format: 'qcow2' })
    await qemuIo('img.qcow2', ['write -P 0x11 64k 64k'], { cwd: join(dir, 'over') })
    return { cwd: join(dir, 'elsewhere'), file: '../over/img.qcow2', relative: true }
  },
}

/** A backing file shorter than its overlay: zeros past its end. */
function shortBackingCase(format: 'raw' | 'qcow2'): ImageCase {
  return {
    name: `backing file (${format}) shorter than the overlay`,
    async build(dir) {
      await create(dir, `base.${format}`, 1 * MiB + 512 * 3, format === 'raw' ? {} : { cluster_size: 4096 }, undefined, format)
      await qemuIo(`base.${format}`, [`write -P 0xbb 0 ${1 * MiB + 512 * 3}`], { format, cwd: dir })
      await create(dir, 'img.qcow2', 3 * MiB, { cluster_size: 64 * KiB }, { file: `base.${format}`, format })
      await qemuIo('img.qcow2', ['write -P 0x11 0 4k', 'write -P 0x12 2M 4k'], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** A raw backing file whose length is not a whole number of sectors (QEMU rounds it up). */
const UNALIGNED_BACKING_CASE: ImageCase = {
  name: 'raw backing file of 1 MiB + 700 bytes',
  expectMap: [/"start": 1048576, "length": 700, "depth": 1/],
  async build(dir) {
    const base = Buffer.alloc(1 * MiB + 700, 0xbb)
    base.fill(0, 100 * KiB, 200 * KiB) // a zero run in the data
    writeFileSync(join(dir, 'base.raw'), base)
    await create(dir, 'img.qcow2', 2 * MiB, { cluster_size: 4096 }, { file: 'base.raw', format: 'raw' })
    await qemuIo('img.qcow2', ['write -P 0x11 0 4k', `write -P 0x12 ${1 * MiB - 2048} 1k`], { cwd: dir })
    return { cwd: dir, file: 'img.qcow2' }
  },
}

/** Two internal snapshots with writes between them, then a resize. */
export const SNAPSHOT_CASE: ImageCase = {
  name: 'internal snapshots s1, s2',
  expect: [/"name": "s1"/, /"name": "s2"/, /"virtual-size": 3145728/],
  snapshots: ['s1', 's2'],
  async build(dir) {
    await create(dir, 'img.qcow2', 2 * MiB, { cluster_size: 16 * KiB })
    await qemuIo('img.qcow2', ['write -P 0x01 0 1M', 'write -c -P 0x02 1M 16k'], { cwd: dir })
    await qemuImg(['snapshot', '-c', 's1', 'img.qcow2'], dir)
    await qemuIo('img.qcow2', ['write -P 0x03 512k 1M', 'write -z 0 64k', 'discard 1M 16k'], { cwd: dir })
    await qemuImg(['snapshot', '-c', 's2', 'img.qcow2'], dir)
    await qemuImg(['resize', 'img.qcow2', '3M'], dir)
    await qemuIo('img.qcow2', ['write -P 0x04 100k 10k', 'write -P 0x05 2M 1M'], { cwd: dir })
    return { cwd: dir, file: 'img.qcow2' }
  },
}

/** Lazy refcounts, crashed: the dirty bit is left set. */
const DIRTY_CASE: ImageCase = {
  name: 'lazy_refcounts=on left dirty by abort',
  expect: [/"dirty-flag": true/, /"lazy-refcounts": true/],
  async build(dir) {
    await create(dir, 'img.qcow2', 4 * MiB, { lazy_refcounts: 'on' })
    await qemuIo('img.qcow2', ['write -P 6 1M 64k'], { cwd: dir })
    await qemuIoAbort('img.qcow2', ['write -P 7 0 64k', 'flush', 'write -P 8 2M 4k'], dir)
    return { cwd: dir, file: 'img.qcow2' }
  },
}

/** The corrupt bit set by hand. */
const CORRUPT_CASE: ImageCase = {
  name: 'corrupt bit set',
  expect: [/"corrupt": true/],
  async build(dir) {
    await create(dir, 'img.qcow2', 4 * MiB)
    await qemuIo('img.qcow2', ['write -P 0x11 0 100k', 'write -z 1M 64k'], { cwd: dir })
    setIncompatibleBits(join(dir, 'img.qcow2'), 1n << 1n)
    return { cwd: dir, file: 'img.qcow2' }
  },
}

/** External data file (optionally raw). */
function dataFileCase(raw: boolean): ImageCase {
  return {
    name: `data_file${raw ? ' data_file_raw=on' : ''}`,
    expect: [/"data-file": "img.data"/, new RegExp(`"data-file-raw": ${raw}`)],
    async build(dir) {
      await create(dir, 'img.qcow2', 4 * MiB, { data_file: 'img.data', ...(raw ? { data_file_raw: 'on' } : {}) })
      await qemuIo('img.qcow2', ['write -P 0x11 0 100k', 'write -z 1M 64k', 'write -P 0x12 2M 3k', 'discard 2M 64k', 'write -P 0x13 3M 64k'], { cwd: dir })
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** Grown and shrunk images. */
function resizeCase(how: 'grow' | 'shrink'): ImageCase {
  return {
    name: how === 'grow' ? 'resize +3M' : 'resize --shrink 1M',
    expect: [how === 'grow' ? /"virtual-size": 5242880/ : /"virtual-size": 1048576/],
    async build(dir) {
      await create(dir, 'img.qcow2', 2 * MiB, { cluster_size: 4096 })
      await qemuIo('img.qcow2', ['write -P 0x11 0 100k', `write -P 0x12 ${2 * MiB - 3000} 3000`, 'write -P 0x13 900k 300k'], { cwd: dir })
      if (how === 'grow') {
        await qemuImg(['resize', '-q', 'img.qcow2', '+3M'], dir)
        await qemuIo('img.qcow2', ['write -P 0x14 4M 4k'], { cwd: dir })
      } else {
        await qemuImg(['resize', '-q', '--shrink', 'img.qcow2', '1M'], dir)
      }
      return { cwd: dir, file: 'img.qcow2' }
    },
  }
}

/** Persistent dirty bitmaps. */
const BITMAP_CASE: ImageCase = {
  name: 'persistent bitmaps',
  expect: [/"name": "b0"/, /"name": "second-bitmap"/, /"granularity": 131072/, /"name": "off"/],
  async build(dir) {
    await create(dir, 'img.qcow2', 4 * MiB)
    await qemuImg(['bitmap', '--add', 'img.qcow2', 'b0'], dir)
    await qemuImg(['bitmap', '--add', '-g', '128k', 'img.qcow2', 'second-bitmap'], dir)
    await qemuImg(['bitmap', '--add', '--disable', 'img.qcow2', 'off'], dir)
    await qemuIo('img.qcow2', ['write -P 0x11 0 100k'], { cwd: dir })
    return { cwd: dir, file: 'img.qcow2' }
  },
}

/** Every cluster size QEMU allows. */
export const CLUSTER_SIZES = [512, 1 * KiB, 2 * KiB, 4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB]

/** The whole read matrix. */
export function imageMatrix(): ImageCase[] {
  return [
    ...CLUSTER_SIZES.map(clusterCase),
    refcountCase('0.10', 16), refcountCase('1.1', 1), refcountCase('1.1', 16), refcountCase('1.1', 64),
    ...[512, 4096, 65536, 2 * MiB].map((cs) => compressedWriteCase('zlib', cs)),
    ...[4096, 65536, 1 * MiB].map((cs) => compressedWriteCase('zstd', cs)),
    ...[512, 4096, 65536, 1 * MiB].map((cs) => convertCompressedCase('zlib', cs)),
    ...[512, 8192, 65536, 2 * MiB].map((cs) => convertCompressedCase('zstd', cs)),
    zeroCase('1.1'), zeroCase('0.10'), zeroOverBackingCase('1.1'), zeroOverBackingCase('0.10'),
    extendedL2Case(64 * KiB, true), extendedL2Case(32 * KiB, true), extendedL2Case(64 * KiB, false), extendedL2Case(16 * KiB, true),
    ...['off', 'metadata', 'falloc', 'full'].map((mode) => preallocationCase(mode)),
    preallocationCase('metadata', { extended_l2: 'on' }), preallocationCase('metadata', { compat: '0.10' }),
    CHAIN_CASE, RELATIVE_CHAIN_CASE, DOTDOT_BACKING_CASE, shortBackingCase('raw'), shortBackingCase('qcow2'), UNALIGNED_BACKING_CASE,
    SNAPSHOT_CASE, DIRTY_CASE, CORRUPT_CASE, dataFileCase(false), dataFileCase(true),
    resizeCase('grow'), resizeCase('shrink'), BITMAP_CASE,
  ]
}
