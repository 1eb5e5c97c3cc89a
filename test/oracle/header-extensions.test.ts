// Oracle: header details qemu-img 7.2 reads its own way. Unknown incompatible feature bits are
// named from the image's feature name table exactly as block/qcow2.c report_unsupported_feature
// does (table order, first nameless entry ends it, leftover bits as one hex mask), and a header
// extension that appears twice is read in file order, the later one winning (qcow2_read_extensions).
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import * as spec from '../../src/qcow2/spec.js'
import { buildQcow2, type BuildOptions } from '../helpers/build-qcow2.js'
import { pokeHeader } from '../helpers/poke.js'
import { needTools, qimgInProcess, run, tempDir } from '../helpers/oracle.js'

const root = tempDir('qimg-oracle-header-ext-')
after(() => root.cleanup())

type Feature = { type: number; bit: number; name: string }

/** A feature name table extension's bytes: 48-byte entries, names NUL-padded to 46 bytes. */
function featureTable(entries: readonly Feature[]): Uint8Array {
  const data = new Uint8Array(entries.length * 48)
  entries.forEach((e, i) => {
    data[i * 48] = e.type
    data[i * 48 + 1] = e.bit
    data.set(new TextEncoder().encode(e.name).subarray(0, 46), i * 48 + 2)
  })
  return data
}

const LONG = 'n'.repeat(46)  // a name filling its field, no NUL

const CASES: { name: string; incompatible: bigint; options: Partial<BuildOptions> }[] = [
  { name: 'no feature table', incompatible: 1n << 63n, options: {} },
  { name: 'bits named and not', incompatible: (1n << 7n) | (1n << 9n) | (1n << 40n), options: { featureTable: [{ type: 0, bit: 7, name: 'fancy feature' }] } },
  { name: 'table order, a bit named twice, a compatible entry of the same bit', incompatible: (1n << 12n) | (1n << 8n), options: { featureTable: [
    { type: 1, bit: 8, name: 'compatible eight' }, { type: 0, bit: 12, name: 'twelve' }, { type: 0, bit: 8, name: 'eight' }, { type: 0, bit: 12, name: 'twelve again' }] } },
  { name: 'a nameless entry ends the table', incompatible: (1n << 9n) | (1n << 10n), options: { featureTable: [
    { type: 0, bit: 9, name: 'nine' }, { type: 0, bit: 5, name: '' }, { type: 0, bit: 10, name: 'ten' }] } },
  { name: 'a 46-byte name', incompatible: 1n << 33n, options: { featureTable: [{ type: 0, bit: 33, name: LONG }] } },
  { name: 'two feature tables: the later one is used', incompatible: (1n << 7n) | (1n << 11n), options: {
    featureTable: [{ type: 0, bit: 7, name: 'first seven' }],
    extensions: [{ type: spec.EXT_FEATURE_TABLE, data: featureTable([{ type: 0, bit: 11, name: 'second eleven' }]) }] } },
]

describe('unknown incompatible features: qemu-img\'s message', { concurrency: 4 }, () => {
  for (const c of CASES) {
    it(c.name, async (t) => {
      if (!needTools(t, 'qemu-img')) return
      const { bytes } = buildQcow2({ virtualSize: 65536, ...c.options })
      pokeHeader(bytes, 'incompatibleFeatures', c.incompatible)
      const file = root.file(`${c.name.replaceAll(/\W+/g, '-')}.qcow2`)
      writeFileSync(file, bytes)
      const want = await run('qemu-img', ['info', file])
      const got = await qimgInProcess(['info', file])
      assert.match(want.stderr, /Unsupported qcow2 feature/)
      assert.equal(got.stderr, want.stderr.replace(/^qemu-img:/, 'qimg:'))
      assert.equal(got.code, want.code)
    })
  }
})

describe('a header extension that appears twice', () => {
  it('backing format twice: opened, the later one read', async (t) => {
    if (!needTools(t, 'qemu-img')) return
    const { bytes } = buildQcow2({ virtualSize: 65536, backingFile: 'missing.qcow2', backingFormat: 'qcow2',
      extensions: [{ type: spec.EXT_BACKING_FORMAT, data: new TextEncoder().encode('raw') }] })
    const file = root.file('twice.qcow2')
    writeFileSync(file, bytes)
    const want = await run('qemu-img', ['info', '--output=json', file])
    const got = await qimgInProcess(['info', '--output=json', file])
    assert.equal(want.code, 0, want.stderr)
    assert.equal(got.code, 0, got.stderr)
    const fields = (json: string) => {
      const info = JSON.parse(json) as Record<string, unknown>
      return [info['backing-filename'], info['backing-filename-format'], info['virtual-size']]
    }
    assert.deepEqual(fields(got.stdout), fields(want.stdout))
    assert.deepEqual(fields(got.stdout), ['missing.qcow2', 'raw', 65536])
  })
})
