// Oracle: discard, write-zeroes and preallocating resize reach the host file as they do in QEMU's
// file-posix: punched holes (PUNCH_HOLE | KEEP_SIZE), zero ranges, fallocate. The same qemu-io /
// qemu-img commands run on twin files; the bytes, `stat` block counts and `qemu-img map` must
// agree. Each case also runs with the native addon disabled (QIMG_NO_NATIVE=1): then qimg does
// what QEMU does where fallocate is unsupported (a discard leaves the bytes, zeros are written,
// falloc writes zeros as glibc's posix_fallocate does), which the expectations spell out.
import { after, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { fallocateSupported } from '../../src/io/holes.js'
import { needTools, qimg, runOk, tempDir } from '../helpers/oracle.js'

const root = tempDir('qimg-oracle-zero-discard-')
after(() => root.cleanup())

const MiB = 1024 * 1024
const NO_NATIVE = { QIMG_NO_NATIVE: '1' }

/** Allocated bytes of a file (st_blocks), as `du` counts them. */
const allocated = (path: string): number => statSync(path).blocks * 512

/** Block counts of twin files agree, give or take the filesystem's extent-tree blocks. */
function sameAllocation(got: string, want: string, what: string): void {
  assert.ok(Math.abs(allocated(got) - allocated(want)) <= 16 * 1024, `${what}: ${allocated(got)} bytes allocated, qemu's ${allocated(want)}`)
}

/** Skips the native variant where the addon is not built (CI must have it). */
function needAddon(t: TestContext): boolean {
  if (fallocateSupported()) return true
  const reason = 'native addon qimg_seek (with fallocate) not built'
  if (process.env['CI']) assert.fail(`${reason}: CI must have it`)
  t.skip(reason)
  return false
}

async function qimgOk(args: string[], env?: Record<string, string>): Promise<string> {
  const r = await qimg(args, env ? { env } : {})
  assert.equal(r.code, 0, `qimg ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

const IO = ['-c', 'write -P 1 0 4M', '-c', 'discard 1M 2M', '-c', 'write -z -u 3M 512k', '-c', 'write -z 3584k 256k']

const variants = [
  { name: 'with the native addon', env: undefined },
  { name: 'without the native addon (QIMG_NO_NATIVE=1)', env: NO_NATIVE },
]

for (const { name, env } of variants) {
  describe(`raw discard / write -z / resize ${name}`, () => {
    const native = env === undefined
    const ready = (t: TestContext): boolean => needTools(t, 'qemu-img', 'qemu-io') && (!native || needAddon(t))

    it('qemu-io discard and write -z [-u] on a raw file', async (t) => {
      if (!ready(t)) return
      const [q, i] = [root.file(`io-q-${native}.raw`), root.file(`io-i-${native}.raw`)]
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', q, '4M'])
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', i, '4M'])
      await runOk('qemu-io', ['-f', 'raw', ...IO, q])
      await qimgOk(['io', '-f', 'raw', ...IO, i], env)
      const got = readFileSync(i)
      if (native) {
        // A 2 MiB discard and a 512 KiB write -z -u punch holes: 2.5 MiB fewer blocks, zeros.
        assert.deepEqual(got, readFileSync(q))
        sameAllocation(i, q, 'raw file')
        assert.ok(allocated(i) <= 4 * MiB - 2.5 * MiB + 64 * 1024, `${allocated(i)} bytes allocated`)
        assert.equal(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', i]), await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', q]))
      } else {
        // No hole punching: the discard is a hint not taken (QEMU ignores -ENOTSUP); zeros written.
        const want = new Uint8Array(4 * MiB).fill(1)
        want.fill(0, 3 * MiB, 3.75 * MiB)
        assert.deepEqual(new Uint8Array(got), want)
        assert.ok(allocated(i) >= 4 * MiB, `${allocated(i)} bytes allocated`)
      }
    })

    for (const mode of ['off', 'falloc', 'full']) {
      it(`resize --preallocation=${mode} allocates what qemu-img allocates`, async (t) => {
        if (!ready(t)) return
        const [q, i] = [root.file(`rs-${mode}-q-${native}.raw`), root.file(`rs-${mode}-i-${native}.raw`)]
        await runOk('qemu-img', ['create', '-q', '-f', 'raw', q, '1M'])
        await runOk('qemu-img', ['create', '-q', '-f', 'raw', i, '1M'])
        await runOk('qemu-img', ['resize', '-q', '-f', 'raw', `--preallocation=${mode}`, q, '5M'])
        await qimgOk(['resize', '-q', '-f', 'raw', `--preallocation=${mode}`, i, '5M'], env)
        assert.equal(statSync(i).size, statSync(q).size)
        sameAllocation(i, q, `resize --preallocation=${mode}`)
        if (mode !== 'off') assert.ok(allocated(i) >= 4 * MiB, `${allocated(i)} bytes allocated`)
        assert.deepEqual(readFileSync(i), readFileSync(q))
      })
    }

    for (const mode of ['falloc', 'full']) {
      it(`create -o preallocation=${mode} allocates what qemu-img allocates`, async (t) => {
        if (!ready(t)) return
        const [q, i] = [root.file(`cr-${mode}-q-${native}.raw`), root.file(`cr-${mode}-i-${native}.raw`)]
        await runOk('qemu-img', ['create', '-q', '-f', 'raw', '-o', `preallocation=${mode}`, q, '3M'])
        await qimgOk(['create', '-q', '-f', 'raw', '-o', `preallocation=${mode}`, i, '3M'], env)
        assert.equal(statSync(i).size, statSync(q).size)
        sameAllocation(i, q, `create -o preallocation=${mode}`)
        assert.ok(allocated(i) >= 3 * MiB, `${allocated(i)} bytes allocated`)
      })
    }

    it('resize of an empty file writes its first block, as QEMU (allocate_first_block)', async (t) => {
      if (!ready(t)) return
      const [q, i] = [root.file(`empty-q-${native}.raw`), root.file(`empty-i-${native}.raw`)]
      writeFileSync(q, '')
      writeFileSync(i, '')
      await runOk('qemu-img', ['resize', '-q', '-f', 'raw', q, '100'])
      await qimgOk(['resize', '-q', '-f', 'raw', i, '100'], env)
      assert.equal(statSync(i).size, statSync(q).size)
      sameAllocation(i, q, 'first block')
    })

    it('qcow2 with data_file_raw: discard and zero reach the data file as in QEMU', async (t) => {
      if (!ready(t)) return
      const images = ['q', 'i'].map((who) => ({ image: root.file(`df-${who}-${native}.qcow2`), data: root.file(`df-${who}-${native}.data`) }))
      for (const { image, data } of images) {
        await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${data},data_file_raw=on`, image, '4M'])
      }
      const [q, i] = images as [typeof images[0], typeof images[0]]
      const commands = ['-c', 'write -P 1 0 4M', '-c', 'discard 1M 1M', '-c', 'write -z -u 2M 512k', '-c', 'write -z 3M 256k']
      await runOk('qemu-io', ['-f', 'qcow2', ...commands, q.image])
      await qimgOk(['io', '-f', 'qcow2', ...commands, i.image], env)
      assert.match(await runOk('qemu-img', ['compare', q.image, i.image]), /Images are identical/)
      assert.match(await runOk('qemu-img', ['check', i.image]), /No errors were found/)
      const got = readFileSync(i.data)
      if (native) {
        assert.deepEqual(got, readFileSync(q.data))
        sameAllocation(i.data, q.data, 'data file')
        assert.ok(allocated(i.data) <= 4 * MiB - 1.5 * MiB + 64 * 1024, `${allocated(i.data)} bytes allocated`)
      } else {
        // The discarded cluster keeps its bytes in the data file (QEMU's discard on -ENOTSUP);
        // zeroed ranges are zeros. The guest view (compared above) reads zeros in both.
        const want = new Uint8Array(4 * MiB).fill(1)
        want.fill(0, 2 * MiB, 2.5 * MiB)
        want.fill(0, 3 * MiB, 3.25 * MiB)
        assert.deepEqual(new Uint8Array(got), want)
      }
    })
  })
}
