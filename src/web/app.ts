// The inspector page: asks its worker to open an image (dropped files, or ?open=URL as `qimg web`
// links it), then shows info, the allocation map as a picture, a hex view, check results, and
// saves converted copies as they stream out of the worker. The data it shows are also left in
// the DOM (the JSON texts, data-state attributes) for tests and for copying.
import { drawMap, legend, type DrawnMap } from './map-view.js'
import type { CheckResult, MapResult, Opened, Reply, Request, Source } from './protocol.js'

const element = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })
const waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void; progress?: ((done: number, total: number) => void) | undefined }>()
let nextId = 1
worker.onmessage = (event: MessageEvent<Reply>) => {
  const reply = event.data
  const job = waiting.get(reply.id)
  if (!job) return
  if ('progress' in reply) job.progress?.(reply.progress.done, reply.progress.total)
  else {
    waiting.delete(reply.id)
    if ('error' in reply) job.reject(new Error(reply.error))
    else job.resolve(reply.result)
  }
}

/** One request to the worker; the progress bar follows it when `label` is given. */
function ask<T>(request: Request, label?: string): Promise<T> {
  const id = nextId++
  const bar = element<HTMLProgressElement>('progress')
  const progress = label === undefined ? undefined : (done: number, total: number) => {
    bar.classList.remove('hidden')
    bar.max = Math.max(1, total)
    bar.value = done
    bar.title = `${label}: ${Math.floor((done * 100) / Math.max(1, total))}%`
  }
  return new Promise<T>((resolve, reject) => {
    waiting.set(id, { resolve: resolve as (value: unknown) => void, reject, progress })
    worker.postMessage({ id, request })
  }).finally(() => { if (label !== undefined) bar.classList.add('hidden') })
}

function setState(id: string, state: string, text?: string): void {
  const node = element(id)
  node.dataset.state = state
  if (text !== undefined) node.textContent = text
}

function fail(id: string, e: unknown): void {
  const message = e instanceof Error ? e.message : String(e)
  element('error').textContent = message
  setState(id, 'error')
}

const hex = (n: number): string => '0x' + n.toString(16)
let opened: Opened | undefined
let drawn: DrawnMap | undefined

async function openSource(source: Source): Promise<void> {
  element('error').textContent = ''
  element('image').classList.add('hidden')
  setState('status', 'opening', 'Opening…')
  for (const id of ['map', 'hex', 'check-text', 'download-state']) setState(id, 'idle')
  try {
    const passphrase = element<HTMLInputElement>('passphrase').value
    opened = await ask<Opened>({ op: 'open', source, passphrase: passphrase === '' ? undefined : passphrase })
  } catch (e) {
    fail('status', e)
    return
  }
  element('chain').replaceChildren(...chainRows(JSON.parse(opened.infoJson) as LayerJson[]))
  element('info-text').textContent = opened.infoText
  element('info-json').textContent = opened.infoJson
  element('note').textContent = opened.note ?? ''
  element('image').classList.remove('hidden')
  setState('status', 'open', `${opened.name}: ${opened.virtualSize} bytes, ${opened.layers.length} layer(s)`)
  await showMap()
  await showHex()
}

/** The members of qemu-img's info JSON the chain table shows. */
interface LayerJson {
  filename: string
  format: string
  'virtual-size': number
  'cluster-size'?: number
  'backing-filename'?: string
  snapshots?: { id: string; name: string; 'date-sec': number; 'vm-state-size': number }[]
  'format-specific'?: { data?: { bitmaps?: { name: string; granularity: number; flags: string[] }[] } }
}

function row(cells: string[], header = false): HTMLTableRowElement {
  const tr = document.createElement('tr')
  for (const text of cells) {
    const cell = document.createElement(header ? 'th' : 'td')
    cell.textContent = text
    tr.append(cell)
  }
  return tr
}

/** The backing chain as a table: a row per layer, then its snapshots and bitmaps. */
function chainRows(layers: LayerJson[]): HTMLTableRowElement[] {
  const rows = [row(['depth', 'file', 'format', 'virtual size', 'cluster size', 'backing file', 'snapshots', 'bitmaps'], true)]
  layers.forEach((layer, depth) => {
    const snapshots = (layer.snapshots ?? []).map((s) => `${s.id} ${s.name} (${new Date(s['date-sec'] * 1000).toISOString()}, VM state ${s['vm-state-size']} B)`)
    const bitmaps = (layer['format-specific']?.data?.bitmaps ?? []).map((b) => `${b.name} (granularity ${b.granularity}${b.flags.length ? ', ' + b.flags.join(' ') : ''})`)
    rows.push(row([String(depth), layer.filename, layer.format, String(layer['virtual-size']), String(layer['cluster-size'] ?? ''),
      layer['backing-filename'] ?? '', snapshots.join('; '), bitmaps.join('; ')]))
  })
  return rows
}

async function showMap(): Promise<void> {
  if (!opened) return
  setState('map', 'loading')
  try {
    const result = await ask<MapResult>({ op: 'map' }, 'map')
    element('map-json').textContent = result.json
    drawn = drawMap(element<HTMLCanvasElement>('map'), result.entries, opened.virtualSize)
    element('legend').replaceChildren(...legend(result.entries, opened.layers).map(({ colour, label }) => {
      const item = document.createElement('span')
      const swatch = document.createElement('i')
      swatch.style.background = colour
      item.append(swatch, label)
      return item
    }), `one cell = ${drawn.cellBytes} bytes`)
    setState('map', 'ready')
  } catch (e) {
    fail('map', e)
  }
}

/** Hex lines as `xxd` prints them: offset, 16 bytes, their ASCII. */
function hexLines(offset: number, bytes: Uint8Array): string {
  const lines: string[] = []
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, at + 16)
    const pairs = Array.from(row, (b) => b.toString(16).padStart(2, '0'))
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('')
    lines.push(`${(offset + at).toString(16).padStart(12, '0')}: ${pairs.join(' ').padEnd(47)}  ${ascii}`)
  }
  return lines.join('\n')
}

async function showHex(): Promise<void> {
  const text = element<HTMLInputElement>('hex-offset').value.trim()
  const offset = Number(text)
  const view = element('hex')
  if (!Number.isSafeInteger(offset) || offset < 0) {
    fail('hex', new Error(`hex: offset ${JSON.stringify(text)} is not a byte offset (decimal or 0x…)`))
    return
  }
  setState('hex', 'loading')
  try {
    const bytes = await ask<Uint8Array>({ op: 'hex', offset, length: 256 })
    view.textContent = hexLines(offset, bytes)
    view.dataset.offset = String(offset)
    view.dataset.bytes = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
    setState('hex', 'ready')
  } catch (e) {
    fail('hex', e)
  }
}

async function runCheck(): Promise<void> {
  setState('check-text', 'loading', 'Checking…')
  try {
    const result = await ask<CheckResult>({ op: 'check' })
    const text = result.supported ? result.text + (result.json ? '\n' + result.json : '') : result.reason
    setState('check-text', result.supported ? 'ready' : 'unsupported', text)
  } catch (e) {
    fail('check-text', e)
  }
}

/**
 * Saves a converted copy. With the File System Access API the stream goes straight into the
 * chosen file; otherwise into a Blob (the browser's blob store, which spills to disk) behind a
 * download link. Never an image-sized buffer in this page.
 */
async function download(format: 'raw' | 'qcow2'): Promise<void> {
  if (!opened) return
  const name = opened.name.replace(/^.*\//, '').replace(/\.[^.]*$/, '') + (format === 'raw' ? '.raw' : '.qcow2')
  const picker = (window as { showSaveFilePicker?: (options: { suggestedName: string }) => Promise<FileSystemFileHandle> }).showSaveFilePicker
  const direct = picker !== undefined && !new URLSearchParams(location.search).has('blob-downloads')
  setState('download-state', 'streaming', `${name}…`)
  try {
    // The picker needs the click's user activation: ask before the worker is.
    const handle = direct ? await picker({ suggestedName: name }) : undefined
    const converted = await ask<ReadableStream<Uint8Array>>({ op: 'download', format })
    // Progress counted here, as the bytes go by: of the guest size for raw, in MiB for qcow2.
    const bar = element<HTMLProgressElement>('progress')
    let written = 0
    const counted = converted.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        written += chunk.length
        if (format === 'raw') {
          bar.classList.remove('hidden')
          bar.max = Math.max(1, opened!.virtualSize)
          bar.value = written
        }
        element('download-state').textContent = `${name}: ${(written / 2 ** 20).toFixed(1)} MiB…`
        controller.enqueue(chunk)
      },
    }))
    if (handle) await counted.pipeTo(await handle.createWritable())
    else {
      const blob = await new Response(counted).blob()
      const link = document.createElement('a')
      link.href = URL.createObjectURL(blob)
      link.download = name
      link.click()
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000)
    }
    bar.classList.add('hidden')
    setState('download-state', 'done', `${name} saved`)
  } catch (e) {
    fail('download-state', e)
  }
}

function tooltip(event: MouseEvent): void {
  const tip = element('tooltip')
  const canvas = element<HTMLCanvasElement>('map')
  const box = canvas.getBoundingClientRect()
  const hit = drawn?.at(((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height)
  if (!hit || !opened) {
    tip.style.display = 'none'
    return
  }
  const { entry, guest } = hit
  const where = entry.data ? (entry.offset === undefined ? 'compressed: no host offset' : `host offset ${hex(entry.offset + (guest - entry.start))} in ${opened.layers[entry.depth] ?? '?'}`)
    : entry.present ? 'reads as zeros' : 'unallocated'
  tip.textContent = `guest ${hex(guest)} (cell of ${drawn!.cellBytes} bytes)\nextent ${hex(entry.start)}, length ${hex(entry.length)}\ndepth ${entry.depth}: ${where}`
  tip.style.left = `${event.clientX + 12}px`
  tip.style.top = `${event.clientY + 12}px`
  tip.style.display = 'block'
}

function filesChosen(list: FileList | null | undefined): void {
  const files = Array.from(list ?? [])
  // The worker picks the top image: the file no other names as its backing file.
  if (files.length > 0) void openSource({ files })
}

const drop = element('drop')
drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over') })
drop.addEventListener('dragleave', () => drop.classList.remove('over'))
drop.addEventListener('drop', (event) => {
  event.preventDefault()
  drop.classList.remove('over')
  filesChosen(event.dataTransfer?.files)
})
element<HTMLInputElement>('file').addEventListener('change', (event) => filesChosen((event.target as HTMLInputElement).files))
element('open-url').addEventListener('click', () => { void openSource({ url: element<HTMLInputElement>('url').value }) })
element('hex-show').addEventListener('click', () => { void showHex() })
element('check').addEventListener('click', () => { void runCheck() })
element('download-raw').addEventListener('click', () => { void download('raw') })
element('download-qcow2').addEventListener('click', () => { void download('qcow2') })
const canvas = element('map')
canvas.addEventListener('mousemove', tooltip)
canvas.addEventListener('mouseleave', () => { element('tooltip').style.display = 'none' })

// `qimg web IMG…` links every image it serves as ?open=URL; the first opens at once.
const links = new URLSearchParams(location.search).getAll('open')
if (links.length > 1) {
  const list = document.createElement('p')
  list.append('Images: ', ...links.flatMap((url) => {
    const link = document.createElement('a')
    link.href = '#'
    link.textContent = decodeURIComponent(url.replace(/^.*\//, ''))
    link.addEventListener('click', (event) => { event.preventDefault(); void openSource({ url }) })
    return [link, ' ']
  }))
  drop.after(list)
}
if (links[0] !== undefined) {
  // Also in the URL field: Open opens it again (with the passphrase typed after a refusal).
  element<HTMLInputElement>('url').value = links[0]
  void openSource({ url: links[0] })
}
