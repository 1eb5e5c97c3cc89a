// A fixed-layout record described once as a field table (offsets copied from the spec), which
// drives decode and encode. Fields are unsigned big-endian integers; u64 go through getU64.
import { getU64, setU64 } from './bytes.js'

/** Field type: width in bytes of an unsigned big-endian integer. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64'
/** `[byte offset, type]` per field. */
export type FieldTable = Record<string, readonly [number, FieldType]>
/** The decoded record: every field a number. */
export type Decoded<T extends FieldTable> = { [K in keyof T]: number }

const WIDTH: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8 }

/** A record layout with its size, decode and encode. */
export interface Struct<T extends FieldTable> {
  readonly size: number
  decode(view: DataView, base?: number): Decoded<T>
  encode(view: DataView, value: Decoded<T>, base?: number): void
}

/** Builds a {@link Struct} from a field table. */
export function struct<T extends FieldTable>(fields: T): Struct<T> {
  const entries = Object.entries(fields) as [keyof T & string, readonly [number, FieldType]][]
  const size = Math.max(...entries.map(([, [offset, type]]) => offset + WIDTH[type]))
  return {
    size,
    decode(view, base = 0) {
      const out = {} as Decoded<T>
      for (const [name, [offset, type]] of entries) {
        const at = base + offset
        out[name] = type === 'u8' ? view.getUint8(at)
          : type === 'u16' ? view.getUint16(at)
          : type === 'u32' ? view.getUint32(at)
          : getU64(view, at, name)
      }
      return out
    },
    encode(view, value, base = 0) {
      for (const [name, [offset, type]] of entries) {
        const at = base + offset
        const v = value[name]
        if (type === 'u8') view.setUint8(at, v)
        else if (type === 'u16') view.setUint16(at, v)
        else if (type === 'u32') view.setUint32(at, v)
        else setU64(view, at, v)
      }
    },
  }
}
