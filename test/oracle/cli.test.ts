// Oracle: qimg's command line behaves like qemu-img's for compare, convert (-S, -p), map (human)
// and info --backing-chain: same stdout, same exit code, same arguments, same directory.
// qemu-img always runs as a process. qimg runs as a process (bin/qimg.js) where the process
// matters (exit status, progress output, another working directory) and otherwise in this
// process, through the same CLI entry point with this file's working directory set to the
// images' directory: the same code without paying a Node start for each of the many commands.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, copyFileSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { run as runCli } from '../../src/cli/main.js'
import { hasTool, needTools, qimg, run, tempDir, type RunResult } from '../helpers/oracle.js'
import { CHAIN_CASE, MiB, RELATIVE_CHAIN_CASE, create, qemuImg, qemuIo, syncTree, type ImageRef } from './images.js'

const root = tempDir('qimg-oracle-cli-')
const startDir = process.cwd()
after(() => {
  process.chdir(startDir)
  root.cleanup()
})

/** The qimg CLI in this process (cwd: the images' directory, see `before`). */
async function qimgHere(args: readonly string[]): Promise<RunResult> {
  assert.equal(process.cwd(), dir, 'in-process qimg runs in the images directory')
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, { out: (text) => { stdout += text }, err: (text) => { stderr += text } })
  return { stdout, stderr, code }
}

/** st_blocks of a file after fsync. */
function syncedBlocks(path: string): number {
  const fd = openSync(path, 'r')
  try {
    fsyncSync(fd)
    return fstatSync(fd).blocks
  } finally {
    closeSync(fd)
  }
}

/** Runs qemu-img and qimg with the same arguments in `cwd` (qimg in-process unless `spawn`). */
async function both(args: readonly string[], cwd: string, spawn = false): Promise<{ theirs: RunResult; ours: RunResult }> {
  const ours = spawn || cwd !== dir ? qimg(args, { cwd }) : qimgHere(args)
  const [theirs, oursDone] = await Promise.all([run('qemu-img', args, { cwd }), ours])
  return { theirs, ours: oursDone }
}

/** Asserts qimg prints what qemu-img prints on stdout and exits with the same code. */
async function assertSame(args: readonly string[], cwd: string, expectedCode?: number, spawn = false): Promise<RunResult> {
  const { theirs, ours } = await both(args, cwd, spawn)
  if (expectedCode !== undefined) assert.equal(theirs.code, expectedCode, `qemu-img ${args.join(' ')}: ${theirs.stdout}${theirs.stderr}`)
  assert.equal(ours.code, theirs.code, `qimg ${args.join(' ')} exit code (stderr: ${ours.stderr})`)
  assert.equal(ours.stdout, theirs.stdout, `qimg ${args.join(' ')} stdout`)
  return theirs
}

/** The images `compare`, `convert` and `map` run on; built once (before hook). */
const dir = join(root.path, 'cli')
let ready = false

before(async () => {
  if (!hasTool('qemu-img') || !hasTool('qemu-io')) return
  mkdirSync(dir)
  const at = (name: string): string => join(dir, name)
  await create(dir, 'a.qcow2', 4 * MiB)
  await qemuIo('a.qcow2', ['write -P 0x11 0 1M', 'write -P 0x22 2M 100k', 'write -z 3M 64k', 'write -P 0x33 3500k 1k'], { cwd: dir })
  await Promise.all([
    // same content, another layout
    qemuImg(['convert', '-O', 'qcow2', '-o', 'cluster_size=4096', 'a.qcow2', 'b.qcow2'], dir),
    (async () => {
      await qemuImg(['convert', '-O', 'raw', 'a.qcow2', 'a.raw'], dir)
      // raw files whose length is not a whole number of sectors: a zero tail, data at the very end
      copyFileSync(at('a.raw'), at('u.raw'))
      truncateSync(at('u.raw'), 4 * MiB + 700)
      copyFileSync(at('u.raw'), at('u2.raw'))
      const fd = openSync(at('u2.raw'), 'r+')
      writeSync(fd, Buffer.from([1, 2, 3]), 0, 3, 4 * MiB + 690)
      closeSync(fd)
    })(),
    (async () => {
      copyFileSync(at('a.qcow2'), at('c.qcow2'))
      await qemuIo('c.qcow2', ['write -P 0x99 70000 1'], { cwd: dir }) // one byte, unaligned
    })(),
    (async () => {
      copyFileSync(at('a.qcow2'), at('d.qcow2'))
      await qemuImg(['resize', '-q', 'd.qcow2', '5M'], dir) // larger, zero tail
      copyFileSync(at('d.qcow2'), at('e.qcow2'))
      await qemuIo('e.qcow2', ['write -P 0x44 4200000 3'], { cwd: dir }) // larger, data in the tail
      copyFileSync(at('d.qcow2'), at('z.qcow2'))
      await qemuIo('z.qcow2', ['write -z 4M 1M'], { cwd: dir }) // larger, zero clusters in the tail
    })(),
    (async () => {
      copyFileSync(at('a.qcow2'), at('f.qcow2'))
      await qemuIo('f.qcow2', ['write -P 0 1M 64k'], { cwd: dir }) // zeros as data where a has nothing
    })(),
    (async () => {
      await create(dir, 'c.raw', 5 * MiB + 512, {}, undefined, 'raw') // raw, longer, zero tail
      await qemuIo('c.raw', ['write -P 0x11 0 1M', 'write -P 0x22 2M 100k', 'write -P 0x33 3500k 1k'], { format: 'raw', cwd: dir })
    })(),
    (async () => {
      await create(dir, 'comp.qcow2', 2 * MiB)
      await qemuIo('comp.qcow2', ['write -c -P 0x55 0 128k', 'write -P 0x56 1M 64k'], { cwd: dir })
    })(),
    (async () => {
      await create(dir, 'prealloc.qcow2', 2 * MiB, { preallocation: 'metadata', cluster_size: 16384 })
      await qemuIo('prealloc.qcow2', ['write -P 0x57 100k 50k', 'write -z 1M 64k'], { cwd: dir })
    })(),
    (async () => {
      await create(dir, 'ext.qcow2', 2 * MiB, { data_file: 'ext.data' })
      await qemuIo('ext.qcow2', ['write -P 0x58 0 100k', 'write -P 0x59 1M 4k'], { cwd: dir })
    })(),
  ])
  mkdirSync(at('chain'))
  mkdirSync(at('rel'))
  chain = await CHAIN_CASE.build(at('chain'))
  relativeChain = await RELATIVE_CHAIN_CASE.build(at('rel'))
  syncTree(dir) // `info` compares disk sizes: settle delayed allocation first
  process.chdir(dir)
  ready = true
})

let chain: ImageRef
let relativeChain: ImageRef

/** The `before` hook built the images (it skips when a tool is missing; needTools reports that). */
function usable(t: Parameters<typeof needTools>[0]): boolean {
  if (!needTools(t, 'qemu-img', 'qemu-io')) return false
  assert.ok(ready, 'images were not built')
  return true
}

describe('compare', { concurrency: 4 }, () => {
  const cases: [string, string[], number][] = [
    ['identical images, different cluster size', ['a.qcow2', 'b.qcow2'], 0],
    ['qcow2 against its raw copy', ['a.qcow2', 'a.raw'], 0],
    ['qcow2 against raw with -f and -F', ['-f', 'qcow2', '-F', 'raw', 'a.qcow2', 'a.raw'], 0],
    ['one byte differs at offset 70000', ['a.qcow2', 'c.qcow2'], 1],
    ['one byte differs at offset 70000, swapped', ['c.qcow2', 'a.qcow2'], 1],
    ['second image larger, zero tail', ['a.qcow2', 'd.qcow2'], 0],
    ['first image larger, zero tail', ['d.qcow2', 'a.qcow2'], 0],
    ['larger image with zero clusters in the tail', ['z.qcow2', 'a.qcow2'], 0],
    ['larger raw image, zero tail', ['a.qcow2', 'c.raw'], 0],
    ['raw image of 4 MiB + 700 bytes, zero tail', ['a.qcow2', 'u.raw'], 0],
    ['raw image of 4 MiB + 700 bytes, data in its last bytes', ['u2.raw', 'a.qcow2'], 1],
    ['second image larger, data in the tail', ['a.qcow2', 'e.qcow2'], 1],
    ['first image larger, data in the tail', ['e.qcow2', 'a.qcow2'], 1],
    ['zeros written as data against unallocated', ['a.qcow2', 'f.qcow2'], 0],
    ['strict: zeros written as data against unallocated', ['-s', 'a.qcow2', 'f.qcow2'], 1],
    ['strict: same content, different allocation', ['-s', 'a.qcow2', 'b.qcow2'], 1],
    ['strict: size mismatch', ['-s', 'a.qcow2', 'd.qcow2'], 1],
    ['strict: identical', ['-s', 'a.qcow2', 'a.qcow2'], 0],
    ['quiet: differ', ['-q', 'a.qcow2', 'c.qcow2'], 1],
    ['quiet: identical', ['-q', 'a.qcow2', 'b.qcow2'], 0],
    ['compressed clusters against raw', ['comp.qcow2', 'a.raw'], 1],
    ['chain against its own flattening', ['chain/top.qcow2', 'chain/top.qcow2'], 0],
  ]
  for (const [name, args, code] of cases) {
    it(name, async (t) => {
      if (!usable(t)) return
      await assertSame(['compare', ...args], dir, code)
    })
  }

  it('-p: progress lines, then the verdict after the last \\r and a final newline', async (t) => {
    if (!usable(t)) return
    for (const pair of [['a.qcow2', 'b.qcow2'], ['a.qcow2', 'c.qcow2']]) {
      const { theirs, ours } = await both(['compare', '-p', ...pair], dir, true)
      assert.equal(ours.code, theirs.code)
      const verdict = (text: string): string => text.slice(text.lastIndexOf('\r') + 1)
      assert.equal(verdict(ours.stdout), verdict(theirs.stdout))
      assert.match(ours.stdout, /^ {4}\(0\.00\/100%\)\r( {4}\(\d+\.\d\d\/100%\)\r)*[^\r]*\n\n$/)
    }
  })

  it('a file that does not exist: exit 2, nothing on stdout', async (t) => {
    if (!usable(t)) return
    await assertSame(['compare', 'a.qcow2', 'missing.qcow2'], dir, 2, true)
    await assertSame(['compare', 'missing.qcow2', 'a.qcow2'], dir, 2)
  })
})

describe('convert -O raw', { concurrency: 2 }, () => {
  for (const sparse of ['0', '64k', '4k', '512']) {
    it(`-S ${sparse}: same bytes and same host allocation as qemu-img`, async (t) => {
      if (!usable(t)) return
      const qemuOut = `qemu-S${sparse}.raw`
      const qimgOut = `qimg-S${sparse}.raw`
      const [theirs, ours] = await Promise.all([
        run('qemu-img', ['convert', '-S', sparse, '-O', 'raw', 'f.qcow2', qemuOut], { cwd: dir }),
        qimgHere(['convert', '-S', sparse, '-O', 'raw', 'f.qcow2', qimgOut]),
      ])
      assert.equal(theirs.code, 0, theirs.stderr)
      assert.equal(ours.code, 0, ours.stderr)
      assert.deepEqual(readFileSync(join(dir, qimgOut)), readFileSync(join(dir, qemuOut)))
      // -S decides which zero runs become holes: both tools must leave the same ones. (Synced
      // first, so that delayed allocation cannot make the block counts differ.)
      assert.equal(syncedBlocks(join(dir, qimgOut)), syncedBlocks(join(dir, qemuOut)), 'allocated blocks')
    })
  }

  it('-p prints progress lines ending in (100.00/100%), as qemu-img does', async (t) => {
    if (!usable(t)) return
    const theirs = await run('qemu-img', ['convert', '-p', '-O', 'raw', 'a.qcow2', 'qemu-p.raw'], { cwd: dir })
    const ours = await qimg(['convert', '-p', '-O', 'raw', 'a.qcow2', 'qimg-p.raw'], { cwd: dir }) // a real process: stdout
    assert.equal(ours.code, theirs.code)
    // The intermediate percentages depend on how each tool walks the image; the form and the
    // ending are qemu-img's: "    (P/100%)\r" lines, the last at 100.00, then "\n".
    const ending = '    (100.00/100%)\r\n'
    assert.ok(theirs.stdout.endsWith(ending), JSON.stringify(theirs.stdout))
    assert.ok(ours.stdout.endsWith(ending), JSON.stringify(ours.stdout))
    assert.match(ours.stdout, /^ {4}\(0\.00\/100%\)\r( {4}\(\d+\.\d\d\/100%\)\r)*\n$/)
    assert.deepEqual(readFileSync(join(dir, 'qimg-p.raw')), readFileSync(join(dir, 'qemu-p.raw')))
  })

  it('-p with -q prints nothing', async (t) => {
    if (!usable(t)) return
    const theirs = await run('qemu-img', ['convert', '-p', '-q', '-O', 'raw', 'a.qcow2', 'qemu-pq.raw'], { cwd: dir })
    const ours = await qimg(['convert', '-p', '-q', '-O', 'raw', 'a.qcow2', 'qimg-pq.raw'], { cwd: dir })
    assert.deepEqual([ours.code, ours.stdout], [theirs.code, theirs.stdout])
    assert.deepEqual([theirs.code, theirs.stdout], [0, ''])
  })
})

describe('map', { concurrency: 4 }, () => {
  const images = ['a.qcow2', 'b.qcow2', 'f.qcow2', 'z.qcow2', 'a.raw', 'c.raw', 'u2.raw', 'prealloc.qcow2', 'ext.qcow2', 'chain/top.qcow2', 'chain/mid.qcow2']
  for (const image of images) {
    it(`human output of ${image}`, async (t) => {
      if (!usable(t)) return
      await assertSame(['map', image], dir, 0)
    })
  }

  it('human output refuses compressed clusters with qemu-img\'s message', async (t) => {
    if (!usable(t)) return
    const { theirs, ours } = await both(['map', 'comp.qcow2'], dir)
    assert.equal(theirs.code, 1)
    assert.equal(ours.code, theirs.code)
    assert.equal(ours.stdout, theirs.stdout)
    assert.equal(ours.stderr.replace(/^qimg: /, ''), theirs.stderr.replace(/^qemu-img: /, ''))
  })

  for (const range of [['-s', '1M'], ['-l', '2M'], ['-s', '64k', '-l', '1M'], ['-s', '70000', '-l', '100000'], ['--start-offset=3M', '--max-length=4M']]) {
    it(`${range.join(' ')} (human and json)`, async (t) => {
      if (!usable(t)) return
      for (const image of ['a.qcow2', 'chain/top.qcow2']) {
        await assertSame(['map', ...range, image], dir, 0)
        await assertSame(['map', '--output=json', ...range, image], dir, 0)
      }
    })
  }
})

describe('info', { concurrency: 2 }, () => {
  it('raw image of 4 MiB + 700 bytes: size rounded up to sectors, as qemu-img does', async (t) => {
    if (!usable(t)) return
    await assertSame(['info', 'u2.raw'], dir, 0)
    await assertSame(['info', '--output=json', 'u2.raw'], dir, 0)
    await assertSame(['map', '--output=json', 'u2.raw'], dir, 0)
    const [theirs, ours] = await Promise.all([
      run('qemu-img', ['convert', '-O', 'raw', 'u2.raw', 'u2-qemu.raw'], { cwd: dir }),
      qimgHere(['convert', '-O', 'raw', 'u2.raw', 'u2-qimg.raw']),
    ])
    assert.equal(theirs.code, 0, theirs.stderr)
    assert.equal(ours.code, 0, ours.stderr)
    const copy = readFileSync(join(dir, 'u2-qimg.raw'))
    assert.deepEqual(copy, readFileSync(join(dir, 'u2-qemu.raw')))
    assert.deepEqual(copy.subarray(4 * MiB + 690), Buffer.from([1, 2, 3, ...new Array(331).fill(0)]))
  })
})

describe('info --backing-chain', { concurrency: 2 }, () => {
  it('3-deep chain raw ← qcow2 ← qcow2, human and json', async (t) => {
    if (!usable(t)) return
    await assertSame(['info', '--backing-chain', chain.file], chain.cwd, 0)
    await assertSame(['info', '--backing-chain', '--output=json', chain.file], chain.cwd, 0)
    await assertSame(['info', '--backing-chain', '--output', 'json', join(chain.cwd, chain.file)], dir, 0)
    await assertSame(['info', '--backing-chain', 'chain/mid.qcow2'], dir, 0)
  })

  it('the chain in a subdirectory, named relative to another directory', async (t) => {
    if (!usable(t)) return
    await assertSame(['info', '--backing-chain', relativeChain.file], relativeChain.cwd, 0)
    await assertSame(['info', '--backing-chain', '--output=json', relativeChain.file], relativeChain.cwd, 0)
    await assertSame(['info', relativeChain.file], relativeChain.cwd, 0)
  })
})
