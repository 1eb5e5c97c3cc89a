// The QCOW2 write engine, assembled: core (state, ordered flush) ← data path ← zero path.
import { ZeroingWriter } from './writer-zero.js'

export type { GuestReader, TableAccess, WriterHost, ZeroOptions } from './writer-core.js'

/** Writes to one QCOW2 layer. All metadata changes run under one mutex; reads never wait. */
export class Qcow2Writer extends ZeroingWriter {}
