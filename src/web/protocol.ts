// The messages between the inspector page and its worker: the page asks, the worker answers each
// request by id (progress on the way, then one result or an error).
import type { BlockStatus } from '../format/device.js'

/**
 * Where the image comes from: a URL (the `qimg web` server, or any server with CORS and ranges),
 * or files dropped on the page (an image and its backing files, in any order).
 */
export type Source = { url: string } | { files: File[] }

/** One request. */
export type Request =
  | { op: 'open'; source: Source; passphrase: string | undefined }
  | { op: 'map' }
  | { op: 'hex'; offset: number; length: number }
  | { op: 'check' }
  | { op: 'download'; format: 'raw' | 'qcow2' }

/** What `open` answers: qemu-img info of every layer, as JSON (--backing-chain) and as text. */
export interface Opened {
  name: string
  virtualSize: number
  /** qemu-img info --backing-chain --output=json of the chain. */
  infoJson: string
  /** qemu-img info --backing-chain of the chain, human form. */
  infoText: string
  /** The layer names, top first (depth 0 is the first). */
  layers: string[]
  /** Why a backing file was not opened (dropped files without their backing file). */
  note: string | undefined
}

/** One extent of the map, as qemu-img map --output=json prints it (the host file is the layer at `depth`). */
export type MapEntry = Omit<BlockStatus, 'file'>

/** What `map` answers: the merged extents and qemu-img map --output=json's exact text. */
export interface MapResult { entries: MapEntry[]; json: string }

/** What `check` answers: qemu-img check's lines, summary and JSON, or why there is none. */
export type CheckResult =
  | { supported: true; text: string; json: string }
  | { supported: false; reason: string }

/** A message from the worker. */
export type Reply =
  | { id: number; progress: { done: number; total: number } }
  | { id: number; result: unknown }
  | { id: number; error: string }
