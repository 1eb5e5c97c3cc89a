// Constants of the QCOW2 format (QEMU docs/interop/qcow2.rst) and the limits QEMU enforces
// on open (block/qcow2.h); each names the section it comes from.

/** "QFI\xfb" — header bytes 0-3. */
export const QCOW_MAGIC = 0x514649fb

/** Header sizes: v2 is 72 bytes, v3 at least 104; QEMU writes 112 (with compression_type). */
export const HEADER_V2_LENGTH = 72
export const HEADER_V3_MIN_LENGTH = 104
export const HEADER_V3_LENGTH = 112

/** cluster_bits range QEMU accepts (512 B .. 2 MiB). */
export const MIN_CLUSTER_BITS = 9
export const MAX_CLUSTER_BITS = 21
/** Extended L2 needs subclusters of at least 512 bytes: 32 × 512 = 16 KiB clusters. */
export const MIN_EXTENDED_L2_CLUSTER_BITS = 14
export const SUBCLUSTERS_PER_CLUSTER = 32

/** Incompatible feature bits ("Header", bytes 72-79). */
export const INCOMPAT_DIRTY = 1n << 0n
export const INCOMPAT_CORRUPT = 1n << 1n
export const INCOMPAT_DATA_FILE = 1n << 2n
export const INCOMPAT_COMPRESSION = 1n << 3n
export const INCOMPAT_EXTL2 = 1n << 4n
export const INCOMPAT_KNOWN = 0x1fn
/** Compatible feature bits (bytes 80-87). */
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n
/** Autoclear feature bits (bytes 88-95). */
export const AUTOCLEAR_BITMAPS = 1n << 0n
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n

/** Names QEMU writes in its feature name table, used when an image has no table. */
export const FEATURE_NAMES: readonly { type: number; bit: number; name: string }[] = [
  { type: 0, bit: 0, name: 'dirty bit' },
  { type: 0, bit: 1, name: 'corrupt bit' },
  { type: 0, bit: 2, name: 'external data file' },
  { type: 0, bit: 3, name: 'compression type' },
  { type: 0, bit: 4, name: 'extended L2 entries' },
  { type: 1, bit: 0, name: 'lazy refcounts' },
  { type: 2, bit: 0, name: 'bitmaps' },
  { type: 2, bit: 1, name: 'raw external data' },
]

/** crypt_method values (bytes 32-35). */
export const CRYPT_NONE = 0
export const CRYPT_AES = 1
export const CRYPT_LUKS = 2

/** compression_type values (byte 104). */
export const COMPRESSION_ZLIB = 0
export const COMPRESSION_ZSTD = 1

/** Header extension types ("Header extensions"). */
export const EXT_END = 0x00000000
export const EXT_BACKING_FORMAT = 0xe2792aca
export const EXT_FEATURE_TABLE = 0x6803f857
export const EXT_BITMAPS = 0x23852875
export const EXT_CRYPTO_HEADER = 0x0537be77
export const EXT_DATA_FILE = 0x44415441

/** Limits QEMU enforces (block/qcow2.h). */
export const MAX_BACKING_FILE_NAME = 1023
export const MAX_L1_BYTES = 32 * 1024 * 1024
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024
export const MAX_SNAPSHOTS = 65536
export const MAX_SNAPSHOT_TABLE_BYTES = 1024 * 65536
export const MAX_SNAPSHOT_EXTRA_DATA = 1024
export const MAX_BITMAPS = 65535
export const MAX_BITMAP_DIRECTORY_BYTES = 1024 * 65535
/** A bitmap table: at most 2^27 entries, mapping at most 512 MiB of bitmap clusters (BME_MAX_TABLE_SIZE, BME_MAX_PHYS_SIZE). */
export const MAX_BITMAP_TABLE_ENTRIES = 0x800_0000
export const MAX_BITMAP_PHYS_BYTES = 0x2000_0000
export const MAX_BACKING_FORMAT_NAME = 15
/** Host offsets of clusters are 56-bit (L1/L2 bits 9-55). */
export const MAX_HOST_OFFSET = 2 ** 56

/** Snapshot table entry: fixed part, then extra data, id, name ("Snapshot table"). */
export const SNAPSHOT_HEADER_LENGTH = 40
