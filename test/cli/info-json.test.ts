// Tests for ImageInfo → qemu-img 7.2 `info --output=json`, against goldens captured from qemu-img 7.2.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { ImageInfo, SnapshotInfo } from '../../src/format/info.js'
import { qcow2 } from '../helpers/info-fixtures.js'
import { infoToQValue } from '../../src/cli/info-json.js'
import { toQemuJson } from '../../src/cli/qjson.js'


const json = (info: ImageInfo): string => toQemuJson(infoToQValue(info))

test('raw image', () => {
  const info: ImageInfo = {
    filename: 'r.raw', format: 'raw', virtualSize: 10485760, actualSize: 0, clusterSize: undefined,
    encrypted: undefined, dirtyFlag: false, backingFilename: undefined, fullBackingFilename: undefined,
    backingFilenameFormat: undefined, snapshots: undefined, formatSpecific: undefined,
  }
  assert.equal(json(info), `{
    "virtual-size": 10485760,
    "filename": "r.raw",
    "format": "raw",
    "actual-size": 0,
    "dirty-flag": false
}`)
})

const S1: SnapshotInfo = {
  id: '1', name: 's1', vmStateSize: 0, dateSec: 1795624743, dateNsec: 781400000, vmClockSec: 0,
  vmClockNsec: 0, icount: 0,
}

test('v3 image with a snapshot and two bitmaps', () => {
  const info = qcow2({ filename: 'a.qcow2', actualSize: 233472, snapshots: [S1] }, {
    bitmaps: [
      { name: 'b0', granularity: 65536, flags: ['auto'] },
      { name: 'bitmap-two', granularity: 131072, flags: ['auto'] },
    ],
  })
  assert.equal(json(info), `{
    "snapshots": [
        {
            "icount": 0,
            "vm-clock-nsec": 0,
            "name": "s1",
            "date-sec": 1795624743,
            "date-nsec": 781400000,
            "vm-clock-sec": 0,
            "id": "1",
            "vm-state-size": 0
        }
    ],
    "virtual-size": 1048576,
    "filename": "a.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 233472,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "bitmaps": [
                {
                    "flags": [
                        "auto"
                    ],
                    "name": "b0",
                    "granularity": 65536
                },
                {
                    "flags": [
                        "auto"
                    ],
                    "name": "bitmap-two",
                    "granularity": 131072
                }
            ],
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "dirty-flag": false
}`)
})

test('snapshot without icount, non-ASCII name; bitmap flags in-use and empty', () => {
  const info = qcow2({
    snapshots: [
      { ...S1, vmStateSize: 1179648, dateSec: 1795624829, dateNsec: 517585000, vmClockSec: 3723,
        vmClockNsec: 456789012, icount: undefined },
      { ...S1, id: '3', name: 'é', vmStateSize: 1023488, dateSec: 1795624829, dateNsec: 557577000 },
    ],
  }, {
    bitmaps: [
      { name: 'off', granularity: 65536, flags: ['in-use', 'auto'] },
      { name: 'x"y', granularity: 65536, flags: [] },
    ],
  })
  const out = json(info)
  assert.ok(out.startsWith(String.raw`{
    "snapshots": [
        {
            "vm-clock-nsec": 456789012,
            "name": "s1",
            "date-sec": 1795624829,
            "date-nsec": 517585000,
            "vm-clock-sec": 3723,
            "id": "1",
            "vm-state-size": 1179648
        },
        {
            "icount": 0,
            "vm-clock-nsec": 0,
            "name": "\u00E9",
            "date-sec": 1795624829,
            "date-nsec": 557577000,
            "vm-clock-sec": 0,
            "id": "3",
            "vm-state-size": 1023488
        }
    ],
`), out)
  assert.ok(out.includes(String.raw`            "bitmaps": [
                {
                    "flags": [
                        "in-use",
                        "auto"
                    ],
                    "name": "off",
                    "granularity": 65536
                },
                {
                    "flags": [
                    ],
                    "name": "x\"y",
                    "granularity": 65536
                }
            ],
`), out)
})

test('v2 image reports compat, compression type and refcount bits only', () => {
  const info = qcow2({ filename: 'v2.qcow2', virtualSize: 1073741824, actualSize: 208896 },
    { compat: '0.10', lazyRefcounts: undefined, corrupt: undefined, extendedL2: undefined })
  assert.equal(json(info), `{
    "virtual-size": 1073741824,
    "filename": "v2.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 208896,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "0.10",
            "compression-type": "zlib",
            "refcount-bits": 16
        }
    },
    "dirty-flag": false
}`)
})

test('external data file, zstd, extended L2, lazy refcounts; empty lists omitted', () => {
  const info = qcow2({ filename: 'd.qcow2', virtualSize: 67108864, actualSize: 266240, snapshots: [] }, {
    compressionType: 'zstd', lazyRefcounts: true, extendedL2: true, dataFile: '/tmp/qj/x.data',
    dataFileRaw: true, bitmaps: [],
  })
  assert.equal(json(info), `{
    "virtual-size": 67108864,
    "filename": "d.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 266240,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zstd",
            "lazy-refcounts": true,
            "refcount-bits": 16,
            "data-file": "/tmp/qj/x.data",
            "data-file-raw": true,
            "corrupt": false,
            "extended-l2": true
        }
    },
    "dirty-flag": false
}`)
})

test('backing file, encryption (aes), dirty and corrupt', () => {
  const info = qcow2({
    filename: '/tmp/qj/../qj/eb.qcow2', encrypted: true, dirtyFlag: true, backingFilename: '/tmp/qj/a.qcow2',
    fullBackingFilename: '/tmp/qj/a.qcow2', backingFilenameFormat: 'qcow2',
  }, { encryptFormat: 'aes', corrupt: true })
  assert.equal(json(info), `{
    "backing-filename-format": "qcow2",
    "virtual-size": 1048576,
    "filename": "/tmp/qj/../qj/eb.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "encrypt": {
                "format": "aes"
            },
            "corrupt": true,
            "extended-l2": false
        }
    },
    "full-backing-filename": "/tmp/qj/a.qcow2",
    "encrypted": true,
    "backing-filename": "/tmp/qj/a.qcow2",
    "dirty-flag": true
}`)
})

test('encrypted: false and unknown actual size are omitted', () => {
  const out = json(qcow2({ encrypted: false, actualSize: undefined, dirtyFlag: undefined }))
  assert.ok(!out.includes('"encrypted"'))
  assert.ok(!out.includes('"actual-size"'))
  assert.ok(!out.includes('"dirty-flag"'))
})
