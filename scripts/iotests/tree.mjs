// The minimal build tree QEMU's `check` script wants: the tools at the tree's root, a stand-in for
// the system emulator and the storage daemon (the chosen tests start neither), and
// tests/qemu-iotests/check as a link into the source, so the tests come from the source tree.
import { chmodSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'

// Answers the two questions `check` asks before any test; anything else is a test that would
// start a VM, which this harness does not run.
const EMULATOR_STUB = `#!/bin/sh
# Stand-in for qemu-system-*: the tests this harness runs start no VM.
case "$*" in
  *"-machine help"*) echo "Supported machines are:"; echo "pc                   Standard PC (i440FX + PIIX, 1996) (default)";;
  *"format=help"*) echo "Supported formats: blkdebug file qcow2 raw";;
  *) echo "qimg iotests: no system emulator here ($0 $*)" >&2; exit 1;;
esac
`

function link(target, at) {
  rmSync(at, { force: true })
  symlinkSync(target, at)
}

/**
 * Builds (or refreshes) the tree for one tool: `tool` is 'qemu' (the installed qemu-img and
 * qemu-io) or 'qimg' (links named qemu-img and qemu-io to bin/qimg.js). Returns the directory
 * holding the `check` link.
 */
export function buildTree(workDir, srcDir, tool, qimgBin, tag) {
  const root = path.join(workDir, `tree-${tag}`)
  const iotests = path.join(root, 'tests', 'qemu-iotests')
  mkdirSync(iotests, { recursive: true })
  mkdirSync(path.join(root, 'storage-daemon'), { recursive: true })
  const stub = path.join(root, 'emulator-stub')
  writeFileSync(stub, EMULATOR_STUB)
  chmodSync(stub, 0o755)
  link(stub, path.join(root, `qemu-system-${process.arch === 'x64' ? 'x86_64' : process.arch}`))
  link(stub, path.join(root, 'storage-daemon', 'qemu-storage-daemon'))
  link(tool === 'qimg' ? qimgBin : '/usr/bin/qemu-img', path.join(root, 'qemu-img'))
  link(tool === 'qimg' ? qimgBin : '/usr/bin/qemu-io', path.join(root, 'qemu-io'))
  // qimg nbd is qemu-nbd when started through a link of that name.
  link(tool === 'qimg' ? qimgBin : '/usr/bin/qemu-nbd', path.join(root, 'qemu-nbd'))
  link(path.join(srcDir, 'tests', 'qemu-iotests', 'check'), path.join(iotests, 'check'))
  if (!existsSync(path.join(srcDir, 'tests', 'qemu-iotests', 'check'))) throw new Error(`iotests: no check script in ${srcDir}`)
  return iotests
}
