// The allocation map as a picture: guest space as a grid of cells, left to right and top to
// bottom, each cell coloured by what holds most of its bytes (data at each chain depth,
// compressed, zeros, unallocated); hovering finds the extent under the pointer.
import type { MapEntry } from './protocol.js'

const COLUMNS = 256
const MAX_ROWS = 128
const CELL_PIXELS = 4
const DEPTH_COLOURS = ['#2a6df4', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22']

/** The kinds a cell can show, in legend order: classes 3 and up are data at depth class - 3. */
const UNALLOCATED = 0
const ZERO = 1
const COMPRESSED = 2

/** What an extent shows as. Data with no host offset is compressed (or encrypted) data. */
function classOf(entry: MapEntry): number {
  if (entry.data) return entry.offset === undefined ? COMPRESSED : 3 + entry.depth
  return entry.present && entry.zero ? ZERO : UNALLOCATED
}

/** The legend: one colour per kind, and one per depth present in the map. */
export function legend(entries: readonly MapEntry[], layers: readonly string[]): { colour: string; label: string }[] {
  const depths = new Set(entries.filter((e) => e.data && e.offset !== undefined).map((e) => e.depth))
  const items = [...depths].sort((a, b) => a - b).map((depth) => ({ colour: colourOf(3 + depth), label: `data, depth ${depth} (${layers[depth] ?? '?'})` }))
  return [...items,
    { colour: colourOf(COMPRESSED), label: 'compressed (no host offset)' },
    { colour: colourOf(ZERO), label: 'zeros' },
    { colour: colourOf(UNALLOCATED), label: 'unallocated' }]
}

function colourOf(kind: number): string {
  if (kind === UNALLOCATED) return '#ffffff'
  if (kind === ZERO) return '#c8c8c8'
  if (kind === COMPRESSED) return '#ff8c1a'
  return DEPTH_COLOURS[(kind - 3) % DEPTH_COLOURS.length]!
}

function rgb(colour: string): [number, number, number] {
  const n = Number.parseInt(colour.slice(1), 16)
  return [n >> 16, (n >> 8) & 0xff, n & 0xff]
}

/** A drawn map: the bytes one cell stands for, and the extent at a point of the canvas. */
export interface DrawnMap {
  cellBytes: number
  at(x: number, y: number): { guest: number; entry: MapEntry } | undefined
}

/** Draws `entries` of a `size`-byte guest on `canvas`. */
export function drawMap(canvas: HTMLCanvasElement, entries: readonly MapEntry[], size: number): DrawnMap {
  const granule = 512
  const cellBytes = Math.max(granule, Math.ceil(size / (COLUMNS * MAX_ROWS) / granule) * granule)
  const cells = Math.max(1, Math.ceil(size / cellBytes))
  const rows = Math.ceil(cells / COLUMNS)
  const kinds = 3 + Math.max(0, ...entries.map((e) => e.depth + 1))
  // Bytes of each kind in each cell; the cell shows the kind with most.
  const weight = new Float64Array(cells * kinds)
  for (const entry of entries) {
    const kind = classOf(entry)
    const end = entry.start + entry.length
    for (let cell = Math.floor(entry.start / cellBytes); cell * cellBytes < end && cell < cells; cell++) {
      const overlap = Math.min(end, (cell + 1) * cellBytes) - Math.max(entry.start, cell * cellBytes)
      weight[cell * kinds + kind]! += overlap
    }
  }
  canvas.width = COLUMNS * CELL_PIXELS
  canvas.height = rows * CELL_PIXELS
  const context = canvas.getContext('2d')!
  const image = context.createImageData(canvas.width, canvas.height)
  const palette = Array.from({ length: kinds }, (_, kind) => rgb(colourOf(kind)))
  for (let cell = 0; cell < cells; cell++) {
    let best = 0
    for (let kind = 1; kind < kinds; kind++) if (weight[cell * kinds + kind]! > weight[cell * kinds + best]!) best = kind
    const [r, g, b] = palette[best]!
    const x0 = (cell % COLUMNS) * CELL_PIXELS
    const y0 = Math.floor(cell / COLUMNS) * CELL_PIXELS
    for (let y = y0; y < y0 + CELL_PIXELS; y++) {
      for (let x = x0; x < x0 + CELL_PIXELS; x++) image.data.set([r, g, b, 255], (y * canvas.width + x) * 4)
    }
  }
  context.putImageData(image, 0, 0)
  return {
    cellBytes,
    at(x, y) {
      const cell = Math.floor(y / CELL_PIXELS) * COLUMNS + Math.floor(x / CELL_PIXELS)
      const guest = cell * cellBytes
      if (x < 0 || x >= canvas.width || guest >= size) return undefined
      // The extents are sorted and contiguous: binary search for the one holding `guest`.
      let low = 0
      let high = entries.length - 1
      while (low < high) {
        const mid = (low + high + 1) >> 1
        if (entries[mid]!.start <= guest) low = mid
        else high = mid - 1
      }
      const entry = entries[low]
      return entry && { guest, entry }
    },
  }
}
