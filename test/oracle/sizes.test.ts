// Oracle: size operands as qemu-img reads them (qemu_strtosz via cvtnum): `create` and `measure
// --size` with fractions, rounding, hexadecimal, white space and the texts qemu-img refuses, with
// its two messages. Each size runs through qemu-img and qimg; output and exit code must match.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, rmSync, statSync } from 'node:fs'
import { needTools, qimgInProcess, run, tempDir } from '../helpers/oracle.js'

const root = tempDir('qimg-oracle-sizes-')
after(() => root.cleanup())

const SIZES = [
  // accepted: fractions with a suffix, zero fractions without one, rounding half up to a byte
  '1024.0', '1.5G', '0.5k', '1.', '1.k', '1.0', '1.999999k', '0.0001k', '0.00049k', '0.0005k', '3.3333M', '  1k', '+1k', '0x10', '1b', '1B', '0',
  // refused: a fraction of bytes, no integral digits, exponents, white space or junk after it
  '1.5', '.5k', '1.5e3k', '1e3', '1 k', '1k_', '1kk', 'k', '', '0x1.5', '0x', '1.5b', '18446744073709551616', '99999999999999999999k',
  // out of range for cvtnum (0 .. INT64_MAX)
  '8E', '16E', '15.9999999999E', '18446744073709551615',
]

const tidy = (text: string): string => text.replace(/^qemu-img:/gm, 'qimg:')

describe('size operands: qimg reads them as qemu-img does', { concurrency: 4 }, () => {
  SIZES.forEach((size, index) => {
    it(`create -f raw IMG '${size}'`, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const [q, i] = [root.file(`q${index}.raw`), root.file(`i${index}.raw`)]
      const want = await run('qemu-img', ['create', '-f', 'raw', q, size])
      const got = await qimgInProcess(['create', '-f', 'raw', i, size])
      assert.equal(got.code, want.code, `${got.stderr}${got.stdout}`)
      assert.equal(tidy(got.stderr), tidy(want.stderr))
      assert.equal(got.stdout.replace(i, q), want.stdout)
      assert.equal(existsSync(i), existsSync(q))
      if (existsSync(q)) assert.equal(statSync(i).size, statSync(q).size)
      rmSync(q, { force: true })
      rmSync(i, { force: true })
    })
  })

  for (const size of ['1.5G', '0.5k', '1.5', '8E']) {
    it(`measure --size '${size}'`, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const want = await run('qemu-img', ['measure', '-O', 'qcow2', '--size', size])
      const got = await qimgInProcess(['measure', '-O', 'qcow2', '--size', size])
      assert.equal(got.code, want.code)
      assert.equal(tidy(got.stderr), tidy(want.stderr))
      assert.equal(got.stdout, want.stdout)
    })
  }
})
