// The format registry is the only way into a format (issue 11, "nothing outside a format's
// folder names a format"): this test reads every import of src/ outside the format folders and
// fails on one that reaches into a format folder, except from the registry and entry points
// and the exceptions listed below, each with its reason. A new format's folder (one with a
// module.ts) is covered without a change here.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { formatModules } from '../src/formats.js'

const src = resolve(import.meta.dirname, '../../src')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : []
  })
}

/**
 * Folders of src/ that hold a format: each with a module.ts (format/ holds the interface), and
 * OVA, vmdk's container.
 */
const FORMAT_FOLDERS = [...readdirSync(src).filter((name) => name !== 'format' && existsSync(join(src, name, 'module.ts'))), 'ova']
/** raw is two files at the top of src/ rather than a folder. */
const RAW_FILES = ['raw.ts', 'raw-module.ts']

/** The registry and the entry points, which list the modules and export format APIs. */
const REGISTRY = ['formats.ts', 'index.ts', 'core.ts', 'browser.ts']

/** Importer → the format files it may import, and why. */
const EXCEPTIONS: Record<string, { targets: string[]; reason: string }> = {
  'node/typed-create.ts': {
    targets: ['qcow2/create.ts', 'qcow2/create-image.ts', 'qcow2/module.ts', 'raw-module.ts'],
    reason: "the Node API's typed createQcow2/createRaw (index.ts), a program's shortcut to two formats",
  },
  'node/open-options.ts': {
    targets: ['raw.ts'],
    reason: "QEMU's block graph options: the raw driver's offset/size window is a graph node over RawImage",
  },
  'node/open.ts': {
    targets: ['ova/ova.ts'],
    reason: 'an .ova is a tar holding a VMDK, opened by name before any format probes',
  },
  'commands/upload.ts': {
    targets: ['qcow2/reserved-layout.ts'],
    reason: 'the S3 upload writes qcow2 front to back: a streaming writer, not a driver',
  },
  'cli/commands/convert-stream.ts': {
    targets: ['qcow2/create.ts', 'qcow2/create-options.ts'],
    reason: "convert to a pipe resolves qcow2's options for the qcow2 streaming writer",
  },
}

/**
 * Folders whose files may import format internals: stream/ encodes and decodes formats front
 * to back for pipes (qcow2 tables before data, a fixed VHD's footer, streamOptimized VMDK),
 * with no driver to ask.
 */
const EXCEPTION_FOLDERS = ['stream/']

/** The format a file of src/ belongs to, if any. */
function formatOf(path: string): string | undefined {
  if (RAW_FILES.includes(path)) return 'raw'
  const top = path.split('/')[0]!
  return path.includes('/') && FORMAT_FOLDERS.includes(top) ? top : undefined
}

/** Every relative module a file imports or re-exports, statically or dynamically, as a path of src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const specifiers = [...text.matchAll(/\bfrom\s+'(\.[^']+)'|\bimport\(\s*'(\.[^']+)'\s*\)/g)].map((m) => (m[1] ?? m[2])!)
  return specifiers.map((s) => relative(src, resolve(dirname(file), s)).replace(/\.js$/, '.ts'))
}

test('the format folders found are those of the registered modules', () => {
  const modules = formatModules.map((m) => m.name).filter((name) => name !== 'raw').sort()
  assert.deepEqual(FORMAT_FOLDERS.filter((f) => f !== 'ova').sort(), modules)
})

test('outside its folder no file imports a format, but through the registry', () => {
  const found: string[] = []
  for (const file of files(src)) {
    const path = relative(src, file)
    if (REGISTRY.includes(path)) continue
    const own = formatOf(path)
    for (const target of importsOf(file)) {
      const format = formatOf(target)
      if (format === undefined || format === own) continue
      // Formats may build on each other (luks on RawImage); only the generic layers are held back.
      if (own !== undefined) continue
      if (EXCEPTIONS[path]?.targets.includes(target) || EXCEPTION_FOLDERS.some((f) => path.startsWith(f))) continue
      found.push(`${path} imports ${target}`)
    }
  }
  assert.deepEqual(found, [], 'go through formats.ts (findFormatModule, a module capability) instead')
})

test('every listed exception is still needed', () => {
  for (const [path, { targets }] of Object.entries(EXCEPTIONS)) {
    const imports = importsOf(join(src, path))
    for (const target of targets) assert.ok(imports.includes(target), `${path} no longer imports ${target}: drop it from EXCEPTIONS`)
  }
})
