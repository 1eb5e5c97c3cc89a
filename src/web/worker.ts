// The inspector's worker: opens the image with the library's browser entry and answers the page
// (info, map, hex, check, streamed downloads), so the page stays responsive on large images.
import { ImageError, openImage, setZstdWasm, type BlockDevice, type FileHost } from '../browser.js'
import { formatMapJson, mapImage } from '../commands/map.js'
import { describeLayer } from '../format/describe.js'
import { findFormatModule } from '../formats.js'
import { BlobStorage } from '../io/blob.js'
import { infoToQValue } from '../cli/info-json.js'
import { formatInfoHuman } from '../cli/human.js'
import { toQemuJson } from '../cli/qjson.js'
import { checkHuman, checkJson } from '../cli/check-text.js'
import { feedDevice } from '../stream/feed.js'
import { rawWriter } from '../stream/flat-stream.js'
import { streamQcow2 } from '../stream/qcow2-stream.js'
import { CountingSink } from '../io/sink.js'
import type { CheckResult, MapResult, Opened, Reply, Request, Source } from './protocol.js'
import { streamSink } from './stream-sink.js'

/** The worker's global scope, as much of it as is used (the DOM lib types `self` as a Window). */
interface WorkerScope {
  location: { href: string }
  onmessage: ((event: MessageEvent<{ id: number; request: Request }>) => void) | null
  postMessage(message: Reply, transfer?: Transferable[]): void
}
const scope = self as unknown as WorkerScope

// zstd.wasm sits beside the worker in dist/web/.
setZstdWasm(new URL('./zstd.wasm', scope.location.href))

let device: BlockDevice | undefined

/** The last component of a name: all a dropped File has of its path. */
const lastComponent = (path: string): string => path.slice(path.lastIndexOf('/') + 1)

/**
 * Files dropped together: the backing files an image names are found among them by their last
 * path component (a dropped File has no directory). Nothing else can be opened.
 */
function droppedFiles(files: File[]): FileHost {
  const byName = new Map(files.map((file) => [file.name, file]))
  return {
    async open(path) {
      const file = byName.get(lastComponent(path))
      if (!file) throw new ImageError('NOT_FOUND', `${path}: not among the dropped files (drop the backing files with the image)`, { file: path })
      return new BlobStorage(file)
    },
    canonical: async (path) => lastComponent(path),
    resolve: (_image, name) => lastComponent(name),
  }
}

/** Of dropped files, the one no other names as its backing file (the first when none is). */
async function topOf(files: File[]): Promise<File | undefined> {
  if (files.length < 2) return files[0]
  const named = new Set<string>()
  for (const file of files) {
    try {
      const layer = await openImage(file, { fileReferences: 'ignore', metadataOnly: true })
      const backing = (await layer.info()).backingFilename
      await layer.close()
      if (backing !== undefined) named.add(lastComponent(backing))
    } catch {
      // not an image of a format qimg reads: it cannot be the top either
      named.add(file.name)
    }
  }
  return files.find((file) => !named.has(file.name)) ?? files[0]
}

async function open(source: Source, passphrase: string | undefined): Promise<Opened> {
  await device?.close()
  device = undefined
  let note: string | undefined
  const secret = passphrase === undefined ? undefined : async () => new TextEncoder().encode(passphrase)
  if ('url' in source) device = await openImage(new URL(source.url, scope.location.href).href, { secret })
  else {
    const top = await topOf(source.files)
    if (!top) throw new ImageError('INVALID_ARGUMENT', 'no file given')
    const host = droppedFiles(source.files)
    try {
      device = await openImage(top, { host, secret })
    } catch (e) {
      // Without its backing file the top image alone is still worth inspecting.
      device = await openImage(top, { fileReferences: 'ignore', secret })
      note = `backing file not opened: ${(e as Error).message}`
    }
  }
  const infos = []
  for (const layer of device.chain) infos.push(await describeLayer(layer))
  return {
    name: device.driver.storage.name,
    virtualSize: device.size,
    infoJson: toQemuJson(infos.map(infoToQValue)) + '\n',
    infoText: infos.map(formatInfoHuman).join('\n'),
    layers: device.chain.map((layer) => layer.driver.storage.name),
    note,
  }
}

function opened(): BlockDevice {
  if (!device) throw new ImageError('INVALID_ARGUMENT', 'no image is open')
  return device
}

async function map(progress: (done: number, total: number) => void): Promise<MapResult> {
  const entries = await mapImage(opened(), 0, Infinity, progress)
  return {
    entries: entries.map(({ start, length, depth, present, zero, data, offset }) => ({ start, length, depth, present, zero, data, offset })),
    json: formatMapJson(entries),
  }
}

async function check(): Promise<CheckResult> {
  const image = opened()
  const info = await image.info()
  const module = findFormatModule(info.format)
  if (!module?.check) return { supported: false, reason: `${info.format}: this image format does not support checks` }
  const lines: string[] = []
  const report = await module.check(image.driver.storage, { report: (line) => lines.push(line) })
  if (report.failed) return { supported: true, text: `Check failed: ${report.failed}\n`, json: '' }
  return { supported: true, text: lines.map((line) => line + '\n').join('') + checkHuman(report), json: checkJson(report, image.driver.storage.name, info.format) }
}

/** Starts a converted copy as a stream, which the page saves (and counts). */
function download(format: 'raw' | 'qcow2'): ReadableStream<Uint8Array> {
  const image = opened()
  const { sink, stream, fail } = streamSink(`${image.driver.storage.name} as ${format}`)
  const out = new CountingSink(sink)
  // qcow2 as qemu-img convert -O qcow2 makes it by default (64 KiB clusters, compat 1.1).
  const write = format === 'raw' ? feedDevice(image, rawWriter(out)) : streamQcow2(image, out, { clusterBits: 16 })
  write.then(() => out.close(), fail)
  return stream
}

scope.onmessage = (event) => {
  const { id, request } = event.data
  // At most one progress message per percent.
  let shown = -1
  const progress = (done: number, total: number) => {
    const percent = Math.floor((done * 100) / Math.max(1, total))
    if (percent !== shown) scope.postMessage({ id, progress: { done, total } })
    shown = percent
  }
  const answer = async (): Promise<void> => {
    switch (request.op) {
      case 'open': return scope.postMessage({ id, result: await open(request.source, request.passphrase) })
      case 'map': return scope.postMessage({ id, result: await map(progress) })
      case 'hex': {
        const image = opened()
        const length = Math.max(0, Math.min(request.length, image.size - request.offset))
        return scope.postMessage({ id, result: await image.read(request.offset, length) })
      }
      case 'check': return scope.postMessage({ id, result: await check() })
      case 'download': {
        const stream = download(request.format)
        return scope.postMessage({ id, result: stream }, [stream as unknown as Transferable])
      }
    }
  }
  answer().catch((e: unknown) => scope.postMessage({ id, error: e instanceof Error ? e.message : String(e) }))
}
