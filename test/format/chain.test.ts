import { test } from 'node:test'
import assert from 'node:assert/strict'
import { namesProtocol, pathCombine } from '../../src/format/chain.js'

test('relative backing names resolve against the overlay directory like QEMU path_combine', () => {
  assert.equal(pathCombine('o.qcow2', 'r.raw'), 'r.raw')
  assert.equal(pathCombine('./o.qcow2', 'r.raw'), './r.raw')
  assert.equal(pathCombine('/a/b/o.qcow2', '../c.raw'), '/a/b/../c.raw')
  assert.equal(pathCombine('/a/b/o.qcow2', '/abs.raw'), '/abs.raw')
})

test('protocol and json: names are recognized', () => {
  for (const name of ['json:{"file":"x"}', 'nbd://host/x', 'http://x/y', 'file:foo', 'gluster+tcp://h/v']) assert.equal(namesProtocol(name), true, name)
  for (const name of ['plain.qcow2', 'dir/x:y.qcow2', '/abs/x', 'C:\\disk.qcow2']) assert.equal(namesProtocol(name), false, name)
})
