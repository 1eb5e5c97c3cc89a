// Tests for the QEMU JSON writer: QDict key order, pretty layout and string escaping (goldens from qemu-img 7.2).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { qdictKeys, quoteString, tdbHash, toQemuJson } from '../../src/cli/qjson.js'

test('tdbHash buckets match QEMU QDict order', () => {
  const buckets = ['compat', 'compression-type', 'lazy-refcounts', 'bitmaps', 'refcount-bits', 'data-file',
    'encrypt', 'data-file-raw', 'corrupt', 'extended-l2'].map((key) => tdbHash(key) % 512)
  assert.deepEqual(buckets, [16, 88, 107, 114, 122, 182, 339, 354, 477, 503])
  assert.equal(tdbHash('children') % 512, tdbHash('backing-filename-format') % 512)
})

test('qdictKeys: ascending buckets, latest insertion first within a bucket, undefined skipped', () => {
  const node = {
    filename: 1, format: 1, 'dirty-flag': 1, 'actual-size': 1, 'virtual-size': 1, 'cluster-size': 1,
    encrypted: 1, compressed: 1, 'backing-filename': 1, 'full-backing-filename': 1,
    'backing-filename-format': 1, snapshots: 1, 'format-specific': 1, children: 1, absent: undefined,
  }
  assert.deepEqual(qdictKeys(node), ['compressed', 'children', 'backing-filename-format', 'snapshots',
    'virtual-size', 'filename', 'cluster-size', 'format', 'actual-size', 'format-specific',
    'full-backing-filename', 'encrypted', 'backing-filename', 'dirty-flag'])
  const snapshot = { id: 1, name: 1, 'vm-state-size': 1, 'date-sec': 1, 'date-nsec': 1, 'vm-clock-sec': 1,
    'vm-clock-nsec': 1, icount: 1 }
  assert.deepEqual(qdictKeys(snapshot), ['icount', 'vm-clock-nsec', 'name', 'date-sec', 'date-nsec',
    'vm-clock-sec', 'id', 'vm-state-size'])
})

test('check and measure objects print like qemu-img 7.2', () => {
  const check = { filename: 'a.qcow2', format: 'qcow2', 'check-errors': 0, 'image-end-offset': 720896,
    corruptions: undefined, 'total-clusters': 16 }
  assert.equal(toQemuJson(check), `{
    "image-end-offset": 720896,
    "total-clusters": 16,
    "check-errors": 0,
    "filename": "a.qcow2",
    "format": "qcow2"
}`)
  assert.equal(toQemuJson({ required: 393216, 'fully-allocated': 1074135040, bitmaps: undefined }), `{
    "required": 393216,
    "fully-allocated": 1074135040
}`)
})

test('nested containers, empty object and empty array', () => {
  const value = { type: 'qcow2', data: { flags: [], list: [{}, [1, true, null]] } }
  assert.equal(toQemuJson(value), `{
    "type": "qcow2",
    "data": {
        "flags": [
        ],
        "list": [
            {
            },
            [
                1,
                true,
                null
            ]
        ]
    }
}`)
  assert.equal(toQemuJson({}), '{\n}')
  assert.equal(toQemuJson([]), '[\n]')
  assert.equal(toQemuJson('x'), '"x"')
  assert.equal(toQemuJson(-5), '-5')
})

test('compact form', () => {
  assert.equal(toQemuJson({ type: 'qcow2', data: { flags: ['a', 'b'], e: {} } }, false),
    '{"type": "qcow2", "data": {"flags": ["a", "b"], "e": {}}}')
  assert.equal(toQemuJson([], false), '[]')
})

test('string escaping like json-writer.c quoted_str', () => {
  // qemu-img info --output=json on a file named $'a\tb\x7f\x01😀ü\\.raw'
  assert.equal(quoteString('a\tb\x7f\x01😀ü\\.raw'), String.raw`"a\tb\u007F\u0001\uD83D\uDE00\u00FC\\.raw"`)
  assert.equal(quoteString('"\b\f\n\r/\0'), String.raw`"\"\b\f\n\r/\u0000"`)
  assert.equal(quoteString('\u0080\uffff\ud800x'), String.raw`"\u0080\uFFFF\uFFFDx"`)
  assert.equal(quoteString('x"y'), String.raw`"x\"y"`)
})

test('non-integer numbers are refused', () => {
  assert.throws(() => toQemuJson(1.5), { name: 'ImageError', code: 'INVALID_ARGUMENT' })
})
