// Images the benchmarks run on, built once and cached in bench-work/ (delete a file to rebuild it).
// Three sizes (issue 16: the images people convert every day, not only multi-GiB ones), text-heavy
// and binary content where compression makes it matter:
//   small-text.raw   512 MiB ext4 holding ~100 MB of text (/usr/share/doc, man pages, …)
//   small-bin.raw    512 MiB ext4 holding ~100 MB of binaries (/usr/bin, /usr/lib …)
//   medium.raw       4 GiB ext4 holding ~0.9 GB of files from /usr/share (mostly text)
//   medium-bin.raw   4 GiB ext4 holding ~0.9 GB from /usr/lib (shared objects, compressed data)
//   disk.raw         the large one: 3 GiB ext4 filled with ~2 GiB of real files (/usr/share, /usr/lib…)
//   SIZE.qcow2, SIZE-zlib.qcow2, SIZE-zstd.qcow2: qemu-img convert [-c] of each
//   plain.qcow2  qemu-img convert -O qcow2 disk.raw
//   zlib.qcow2   qemu-img convert -c -O qcow2 disk.raw                    (zlib clusters)
//   zstd.qcow2   qemu-img convert -c -O qcow2 -o compression_type=zstd disk.raw
//   luks.qcow2   qemu-img convert -O qcow2 -o encrypt.format=luks,… disk.raw (secret LUKS_SECRET)
//   snaps.qcow2  1 TiB, preallocation=metadata (16 Mi allocated clusters, a sparse file), with four
//                internal snapshots and 64 MiB of writes after each (COW of shared tables)
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import path from 'node:path'

export const GiB = 1024 ** 3
const MB = 1e6
/** Each raw disk: its size, the apparent bytes of files copied in, and where they come from. */
const DISKS = {
  raw: { file: 'disk.raw', size: '3G', budget: 2 * GiB, sources: ['/usr/share', '/usr/lib', '/usr/lib64', '/usr/libexec', '/usr/bin', '/opt'] },
  'small-text': { file: 'small-text.raw', size: '512M', budget: 100 * MB, sources: ['/usr/share/doc', '/usr/share/man', '/usr/share/perl5', '/usr/share/common-licenses', '/usr/include'] },
  'small-bin': { file: 'small-bin.raw', size: '512M', budget: 100 * MB, sources: ['/usr/bin', '/usr/sbin', '/usr/lib/x86_64-linux-gnu', '/usr/lib'] },
  medium: { file: 'medium.raw', size: '4G', budget: 900 * MB, sources: ['/usr/share'] },
  'medium-bin': { file: 'medium-bin.raw', size: '4G', budget: 900 * MB, sources: ['/usr/lib'] },
}

/** The passphrase of luks.qcow2 and of the LUKS benchmarks (given as --object secret,data=…). */
export const LUKS_SECRET = 'qimg-bench'
/** PBKDF2 time per key slot: short, so that the benchmark measures the data path, not PBKDF2. */
export const LUKS_ITER_TIME_MS = 10

export function sh(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', options.quiet ? 'ignore' : 'inherit', 'inherit'] })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`)
}

/** A copy of a (sparse) file that stays sparse. */
export function copySparse(from, to) {
  sh('cp', ['--sparse=always', from, to])
}

export function describeFile(file) {
  const st = statSync(file)
  return `${(st.size / GiB).toFixed(2)} GiB, ${(st.blocks * 512 / GiB).toFixed(2)} GiB allocated`
}

function duBytes(p) {
  const r = spawnSync('du', ['-s', '--apparent-size', '-B1', p], { encoding: 'utf8' })
  return Number(r.stdout.split('\t')[0]) || 0
}

/** The image cache of one work directory. */
export function imageCache(work, root) {
  const IMAGES = {
    ...Object.fromEntries(Object.entries(DISKS).map(([name, disk]) => [name, { file: disk.file, build: (out) => buildDisk(out, disk) }])),
    // The smaller disks as qcow2, plain and compressed (qemu-img made them all).
    ...Object.fromEntries(['small-text', 'small-bin', 'medium', 'medium-bin'].flatMap((name) => [
      [`${name}.qcow2`, { file: `${name}.qcow2`, build: (out) => sh('qemu-img', ['convert', '-O', 'qcow2', image(name), out]) }],
      [`${name}-zlib.qcow2`, { file: `${name}-zlib.qcow2`, build: (out) => sh('qemu-img', ['convert', '-c', '-O', 'qcow2', image(name), out]) }],
      [`${name}-zstd.qcow2`, { file: `${name}-zstd.qcow2`, build: (out) => sh('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', image(name), out]) }],
    ])),
    empty: { file: 'empty.qcow2', build: (out) => sh('qemu-img', ['create', '-q', '-f', 'qcow2', out, '1G']) },
    plain: { file: 'plain.qcow2', build: (out) => sh('qemu-img', ['convert', '-O', 'qcow2', image('raw'), out]) },
    zlib: { file: 'zlib.qcow2', build: (out) => sh('qemu-img', ['convert', '-c', '-O', 'qcow2', image('raw'), out]) },
    zstd: { file: 'zstd.qcow2', build: (out) => sh('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', image('raw'), out]) },
    luks: {
      file: 'luks.qcow2',
      build: (out) => sh('qemu-img', ['convert', '--object', `secret,id=sec0,data=${LUKS_SECRET}`, '-O', 'qcow2',
        '-o', `encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=${LUKS_ITER_TIME_MS}`, image('raw'), out]),
    },
    snaps: { file: 'snaps.qcow2', build: buildSnapshots },
    vdi: { file: 'disk.vdi', build: (out) => sh('qemu-img', ['convert', '-O', 'vdi', image('raw'), out]) },
    stream: { file: 'stream.vmdk', build: (out) => sh('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', image('raw'), out]) },
    qcow: { file: 'disk.qcow', build: (out) => sh('qemu-img', ['convert', '-O', 'qcow', image('raw'), out]) },
    vhdx: { file: 'disk.vhdx', build: (out) => sh('qemu-img', ['convert', '-O', 'vhdx', image('raw'), out]) },
    'medium.vhdx': { file: 'medium.vhdx', build: (out) => sh('qemu-img', ['convert', '-O', 'vhdx', image('medium'), out]) },
  }

  /** Path of a cached image, building it (and what it needs) on first use. */
  function image(name) {
    const { file, build } = IMAGES[name]
    const target = path.join(work, file)
    if (!existsSync(target)) {
      const t0 = performance.now()
      console.log(`building bench-work/${file} …`)
      const tmp = `${target}.tmp`
      rmSync(tmp, { force: true })
      build(tmp)
      renameSync(tmp, target)
      console.log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${describeFile(target)}`)
    }
    return target
  }

  /** An ext4 image filled from a staging directory of hard links (copies across devices). */
  function buildDisk(out, { size, budget: dataBudget, sources }) {
    const staging = path.join(work, 'staging')
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(staging)
    let budget = dataBudget
    // Whole source trees when they fit, else their children one by one, until the budget is spent.
    const add = (src, depth) => {
      if (budget <= 0 || !existsSync(src) || src.startsWith(root)) return
      const size = duBytes(src)
      if (size <= budget) {
        const dest = path.join(staging, src.replaceAll('/', '_').replace(/^_/, ''))
        const linked = spawnSync('cp', ['-al', src, dest], { stdio: 'ignore' }).status === 0
        if (!linked) {
          rmSync(dest, { recursive: true, force: true })
          sh('cp', ['-a', src, dest])
        }
        budget -= size
      } else if (depth < 3 && statSync(src).isDirectory()) {
        for (const child of readdirSync(src).sort()) add(path.join(src, child), depth + 1)
      }
    }
    for (const src of sources) add(src, 0)
    console.log(`  staged ${((dataBudget - budget) / GiB).toFixed(2)} GiB of files`)
    sh('mke2fs', ['-q', '-t', 'ext4', '-d', staging, '-F', out, size])
    rmSync(staging, { recursive: true, force: true })
  }

  /** 1 TiB with every cluster allocated, then 4 × (snapshot, 64 MiB of writes spread over the disk). */
  function buildSnapshots(out) {
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', out, '1T'])
    for (let s = 1; s <= 4; s++) {
      sh('qemu-img', ['snapshot', '-c', `s${s}`, out])
      const writes = []
      for (let i = 0; i < 64; i++) writes.push('-c', `write -P ${s} ${(i * 10007 + s * 131) % 1_000_000}M 1M`)
      sh('qemu-io', ['-f', 'qcow2', ...writes, out], { quiet: true })
    }
  }

  return { image, files: ['disk.raw', 'plain.qcow2', 'zlib.qcow2', 'zstd.qcow2', 'luks.qcow2', 'snaps.qcow2'] }
}
