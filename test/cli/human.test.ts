// Tests for human `info` / `snapshot -l` output and size_to_str, against goldens captured from qemu-img 7.2.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { ImageInfo, SnapshotInfo } from '../../src/format/info.js'
import { qcow2 } from '../helpers/info-fixtures.js'
import { cFormatG, formatDate, formatInfoHuman, formatSnapshotTable, formatVmClock, sizeToStr } from '../../src/cli/human.js'

process.env.TZ = 'UTC' // goldens were captured with TZ=UTC


test('sizeToStr reproduces size_to_str', () => {
  const cases: [number, string][] = [
    [0, '0 B'], [1, '1 B'], [512, '512 B'], [999, '999 B'], [1000, '0.977 KiB'], [1023, '0.999 KiB'],
    [1024, '1 KiB'], [1536, '1.5 KiB'], [10496, '10.2 KiB'], [197120, '192 KiB'], [200704, '196 KiB'],
    [405504, '396 KiB'], [1000448, '977 KiB'], [1023488, '1e+03 KiB'], [1000 * 1024, '0.977 MiB'],
    [1048576, '1 MiB'], [1179648, '1.12 MiB'], [2297856, '2.19 MiB'], [1e9, '954 MiB'],
    [1073741824, '1 GiB'], [2 ** 40, '1 TiB'], [2 ** 50, '1 PiB'], [2 ** 53 - 1, '8 PiB'],
  ]
  for (const [bytes, expected] of cases) assert.equal(sizeToStr(bytes), expected, `sizeToStr(${bytes})`)
})

test('cFormatG follows C %g', () => {
  assert.equal(cFormatG(1.125, 3), '1.12') // ties round half to even on the exact value
  assert.equal(cFormatG(1.375, 3), '1.38')
  assert.equal(cFormatG(999.5, 3), '1e+03')
  assert.equal(cFormatG(0.0001234, 3), '0.000123')
  assert.equal(cFormatG(0.00001234, 3), '1.23e-05')
  assert.equal(cFormatG(123456, 3), '1.23e+05')
  assert.equal(cFormatG(-2.5, 1), '-2')
  assert.equal(cFormatG(0.1, 17), '0.10000000000000001')
})

test('date and VM clock', () => {
  assert.equal(formatDate(1795624743), '2026-11-25 16:39:03')
  assert.equal(formatVmClock(3723, 456789012), '01:02:03.456')
  assert.equal(formatVmClock(360000, 999999999), '100:00:00.999')
  assert.equal(formatVmClock(0, 0), '00:00:00.000')
})

const S1: SnapshotInfo = {
  id: '1', name: 's1', vmStateSize: 0, dateSec: 1795624743, dateNsec: 781400000, vmClockSec: 0,
  vmClockNsec: 0, icount: 0,
}

test('snapshot table: sizes, long and non-ASCII names, missing icount, long clock', () => {
  const snapshots: SnapshotInfo[] = [
    { ...S1, vmStateSize: 1179648, dateSec: 1795624829, vmClockSec: 3723, vmClockNsec: 456789012, icount: undefined },
    { ...S1, id: '2', name: 'a-very-long-snapshot-name-here', vmStateSize: 10496, dateSec: 1795624829,
      vmClockSec: 360000, vmClockNsec: 999999999, icount: 12345678901 },
    { ...S1, id: '3', name: 'é', vmStateSize: 1023488, dateSec: 1795624829 },
  ]
  assert.equal(formatSnapshotTable(snapshots), `Snapshot list:
ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
1         s1               1.12 MiB 2026-11-25 16:40:29 01:02:03.456           
2         a-very-long-snapshot-name-here 10.2 KiB 2026-11-25 16:40:29100:00:00.99912345678901
3         é               1e+03 KiB 2026-11-25 16:40:29 00:00:00.000          0
`)
  assert.equal(formatSnapshotTable([]), '')
})

test('info: snapshot and bitmaps', () => {
  const info = qcow2({ filename: 'a.qcow2', actualSize: 233472, snapshots: [S1] }, {
    bitmaps: [
      { name: 'b0', granularity: 65536, flags: ['auto'] },
      { name: 'bitmap-two', granularity: 131072, flags: ['auto'] },
    ],
  })
  assert.equal(formatInfoHuman(info), `image: a.qcow2
file format: qcow2
virtual size: 1 MiB (1048576 bytes)
disk size: 228 KiB
cluster_size: 65536
Snapshot list:
ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
1         s1                    0 B 2026-11-25 16:39:03 00:00:00.000          0
Format specific information:
    compat: 1.1
    compression type: zlib
    lazy refcounts: false
    bitmaps:
        [0]:
            flags:
                [0]: auto
            name: b0
            granularity: 65536
        [1]:
            flags:
                [0]: auto
            name: bitmap-two
            granularity: 131072
    refcount bits: 16
    corrupt: false
    extended l2: false
`)
})

test('info: bitmap flags in-use and empty', () => {
  const out = formatInfoHuman(qcow2({}, {
    bitmaps: [
      { name: 'off', granularity: 65536, flags: ['in-use', 'auto'] },
      { name: 'x"y', granularity: 65536, flags: [] },
    ],
  }))
  assert.ok(out.includes(`    bitmaps:
        [0]:
            flags:
                [0]: in-use
                [1]: auto
            name: off
            granularity: 65536
        [1]:
            flags:
            name: x"y
            granularity: 65536
    refcount bits: 16
`), out)
})

test('info: raw image', () => {
  const info: ImageInfo = {
    filename: 'r.raw', format: 'raw', virtualSize: 10485760, actualSize: 0, clusterSize: undefined,
    encrypted: undefined, dirtyFlag: false, backingFilename: undefined, fullBackingFilename: undefined,
    backingFilenameFormat: undefined, snapshots: undefined, formatSpecific: undefined,
  }
  assert.equal(formatInfoHuman(info), `image: r.raw
file format: raw
virtual size: 10 MiB (10485760 bytes)
disk size: 0 B
`)
  assert.equal(formatInfoHuman({ ...info, actualSize: undefined }).split('\n')[3], 'disk size: unavailable')
})

test('info: v2 image', () => {
  const info = qcow2({ filename: 'v2.qcow2', virtualSize: 1073741824, actualSize: 208896 },
    { compat: '0.10', lazyRefcounts: undefined, corrupt: undefined, extendedL2: undefined })
  assert.equal(formatInfoHuman(info), `image: v2.qcow2
file format: qcow2
virtual size: 1 GiB (1073741824 bytes)
disk size: 204 KiB
cluster_size: 65536
Format specific information:
    compat: 0.10
    compression type: zlib
    refcount bits: 16
`)
})

test('info: data file, zstd, lazy refcounts, extended L2', () => {
  const info = qcow2({ filename: 'd.qcow2', virtualSize: 67108864, actualSize: 266240 }, {
    compressionType: 'zstd', lazyRefcounts: true, extendedL2: true, dataFile: '/tmp/qj/x.data', dataFileRaw: true,
  })
  assert.equal(formatInfoHuman(info), `image: d.qcow2
file format: qcow2
virtual size: 64 MiB (67108864 bytes)
disk size: 260 KiB
cluster_size: 65536
Format specific information:
    compat: 1.1
    compression type: zstd
    lazy refcounts: true
    refcount bits: 16
    data file: /tmp/qj/x.data
    data file raw: true
    corrupt: false
    extended l2: true
`)
})

test('info: encrypted, dirty, corrupt, backing file', () => {
  const info = qcow2({
    filename: '/tmp/qj/../qj/eb.qcow2', encrypted: true, dirtyFlag: true, backingFilename: '/tmp/qj/a.qcow2',
    fullBackingFilename: '/tmp/qj/a.qcow2', backingFilenameFormat: 'qcow2',
  }, { encryptFormat: 'aes', corrupt: true })
  assert.equal(formatInfoHuman(info), `image: /tmp/qj/../qj/eb.qcow2
file format: qcow2
virtual size: 1 MiB (1048576 bytes)
disk size: 196 KiB
encrypted: yes
cluster_size: 65536
cleanly shut down: no
backing file: /tmp/qj/a.qcow2
backing file format: qcow2
Format specific information:
    compat: 1.1
    compression type: zlib
    lazy refcounts: false
    refcount bits: 16
    encrypt:
        format: aes
    corrupt: true
    extended l2: false
`)
})

test('info: backing file actual path', () => {
  const base = { backingFilename: 'a.qcow2', backingFilenameFormat: 'qcow2' }
  const line = (info: ImageInfo): string | undefined => formatInfoHuman(info).split('\n')[5]
  assert.equal(line(qcow2({ ...base, fullBackingFilename: '/tmp/qj/a.qcow2' })),
    'backing file: a.qcow2 (actual path: /tmp/qj/a.qcow2)')
  assert.equal(line(qcow2({ ...base, fullBackingFilename: 'a.qcow2' })), 'backing file: a.qcow2')
  assert.equal(line(qcow2({ ...base, fullBackingFilename: undefined })),
    'backing file: a.qcow2 (cannot determine actual path)')
})
