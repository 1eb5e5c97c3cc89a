// The images the remote and browser tests read, made by qemu-img (the oracle) from one raw
// source with compressible text, random bytes and zeros, each with qemu-img's own raw of it.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { mulberry32 } from './prng.js'
import { runOk } from './oracle.js'

/** One image: its file name in the directory, how to open it, and qemu-img's raw of it. */
export interface WebImage {
  name: string
  file: string
  raw: string
  /** LUKS passphrase, when encrypted. */
  secret?: string
}

export const WEB_PASSPHRASE = 'web-test-passphrase'

/** A deterministic source of `size` bytes: text-like runs (compressible), random runs, zeros. */
export function sourceBytes(size: number, seed = 7): Uint8Array {
  const next = mulberry32(seed)
  const out = new Uint8Array(size)
  const words = ['qcow2 ', 'cluster ', 'refcount ', 'backing ', 'zstd ', 'deflate ', 'guest ']
  for (let at = 0; at < size; at += 64 * 1024) {
    const kind = next() % 4
    const end = Math.min(size, at + 64 * 1024)
    if (kind === 0) continue // zeros
    if (kind === 1) for (let i = at; i < end; i++) out[i] = next() & 0xff
    else {
      let i = at
      while (i < end) for (const c of words[next() % words.length]!) { if (i < end) out[i++] = c.charCodeAt(0) }
    }
  }
  return out
}

/** Makes every image in `dir` (plain, zlib, zstd, extended L2, 2 MiB clusters, a chain, LUKS). */
export async function makeWebImages(dir: string): Promise<WebImage[]> {
  const size = 6 * 1024 * 1024
  writeFileSync(join(dir, 'source.raw'), sourceBytes(size))
  const q = (...args: string[]): Promise<string> => runOk('qemu-img', args, { cwd: dir })
  const io = (file: string, ...commands: string[]): Promise<string> => runOk('qemu-io', [...commands.flatMap((c) => ['-c', c]), file], { cwd: dir })
  await q('convert', '-O', 'qcow2', 'source.raw', 'plain.qcow2')
  await q('convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zlib', 'source.raw', 'zlib.qcow2')
  await q('convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'source.raw', 'zstd.qcow2')
  await q('convert', '-O', 'qcow2', '-o', 'extended_l2=on,cluster_size=128k', 'source.raw', 'extl2.qcow2')
  await io('extl2.qcow2', 'write -P 0x5a 4100k 4k', 'write -z 70k 8k')
  await q('convert', '-O', 'qcow2', '-o', 'cluster_size=2M', 'source.raw', 'big-cluster.qcow2')
  // A chain whose names are relative: chain/top.qcow2 -> mid.qcow2 -> ../base/base.qcow2
  await runOk('mkdir', ['-p', 'base', 'chain'], { cwd: dir })
  await q('convert', '-O', 'qcow2', 'source.raw', 'base/base.qcow2')
  await q('create', '-f', 'qcow2', '-b', '../base/base.qcow2', '-F', 'qcow2', 'chain/mid.qcow2')
  await io('chain/mid.qcow2', 'write -P 0x33 1M 256k', 'write -z 2M 64k')
  await q('create', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'chain/top.qcow2')
  await io('chain/top.qcow2', 'write -P 0x44 1100k 8k', 'write -P 0x55 5M 64k')
  await q('convert', '--object', `secret,id=s0,data=${WEB_PASSPHRASE}`, '-O', 'qcow2',
    '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', 'source.raw', 'luks.qcow2')
  const images: WebImage[] = ['plain', 'zlib', 'zstd', 'extl2', 'big-cluster'].map((name) => ({ name, file: `${name}.qcow2`, raw: `${name}.raw` }))
  images.push({ name: 'chain', file: 'chain/top.qcow2', raw: 'chain.raw' }, { name: 'luks', file: 'luks.qcow2', raw: 'luks.raw', secret: WEB_PASSPHRASE })
  for (const image of images) {
    if (image.secret) {
      await q('convert', '--object', `secret,id=s0,data=${image.secret}`, '--image-opts', `driver=qcow2,file.filename=${image.file},encrypt.key-secret=s0`, '-O', 'raw', image.raw)
    } else await q('convert', '-O', 'raw', image.file, image.raw)
  }
  return images
}
