// Oracle: with the system zlib (the optional native addon native/zlib), `qimg convert -c` writes
// the very file qemu-img writes: same deflate streams (QEMU links the system zlib), packed at the
// same offsets, same metadata. Without the addon qimg uses Node's zlib, whose streams differ.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { needTools, run, qimgInProcess, tempDir } from '../helpers/oracle.js'
import { systemZlibVersion } from '../../src/node/system-zlib.js'
import { writePatternedRaw } from './images.js'

const root = tempDir('qimg-oracle-compress-identical-')
after(() => root.cleanup())

describe('qimg convert -c writes the same file as qemu-img convert -c (zlib)', { concurrency: 2 }, () => {
  for (const clusterSize of [65536, 4096, 2 * 1024 * 1024]) {
    it(`cluster_size=${clusterSize}`, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      if (systemZlibVersion() === undefined) {
        t.skip('the optional native addon qimg_zlib is not built (npm run prepare builds it): qimg uses Node\'s zlib')
        return
      }
      const source = root.file(`src-${clusterSize}.raw`)
      writePatternedRaw(source, 6 * 1024 * 1024 + 4096, clusterSize)
      const ours = root.file(`ours-${clusterSize}.qcow2`)
      const theirs = root.file(`theirs-${clusterSize}.qcow2`)
      const options = ['-o', `cluster_size=${clusterSize}`]
      const [q, o] = await Promise.all([
        run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', ...options, source, theirs]),
        qimgInProcess(['convert', '-c', '-f', 'raw', '-O', 'qcow2', ...options, source, ours]),
      ])
      assert.equal(q.code, 0, q.stderr)
      assert.equal(o.code, 0, o.stderr)
      const [a, b] = [readFileSync(ours), readFileSync(theirs)]
      assert.equal(a.length, b.length, 'file size')
      assert.ok(a.equals(b), 'the same bytes')
    })
  }
})
