// json: names and --image-opts strings: QEMU's JSON dialect with its messages, flattened to the
// dotted keys --image-opts gives, so both describe one tree; which operands describe a graph.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { describesGraph, operandOptions, parseDottedOptions, parseJsonOptions } from '../../src/cli/block-options.js'

test('json: and --image-opts describe the same tree', () => {
  const json = parseJsonOptions(`json:{"driver":"qcow2","file":{"driver":"blkdebug","image":{"filename":"a,b.qcow2"},
    "inject-error":[{"event":"l2_load","once":"on"},{"event":"l1_update"}]},'backing':null}`)
  const dotted = parseDottedOptions('driver=qcow2,file.driver=blkdebug,file.image.filename=a,,b.qcow2,file.inject-error.0.event=l2_load,file.inject-error.0.once=on,file.inject-error.1.event=l1_update')
  assert.deepEqual([...json].filter(([k]) => k !== 'backing').sort(), [...dotted].sort())
  assert.equal(json.get('backing'), null)
})

test('json: values keep their JSON types; single quotes and escapes as QEMU reads them', () => {
  const options = parseJsonOptions(`json:{"offset":512,"read-only":true,'name':'it\\'s \\u0041'}`)
  assert.deepEqual([...options], [['offset', 512], ['read-only', true], ['name', "it's A"]])
})

test('malformed json: fails with QEMU\'s words', () => {
  const cases: [string, string][] = [
    ['json:{', 'Could not parse the JSON options: JSON parse error, premature EOI'],
    ['json:', 'Could not parse the JSON options: Expecting a JSON value'],
    ['json:[1]', 'Invalid JSON object given'],
    ['json:{"a":}', 'Could not parse the JSON options: JSON parse error, expecting value'],
    ['json:{"a" 1}', 'Could not parse the JSON options: JSON parse error, missing : in object pair'],
    ['json:{"a":1}x', 'Could not parse the JSON options: Expecting at most one JSON value'],
    ['json:{"a":1,"a":2}', 'Could not parse the JSON options: JSON parse error, duplicate key'],
    ['json:{"a":tru}', "Could not parse the JSON options: JSON parse error, invalid keyword 'tru'"],
    ['json:{1:1}', 'Could not parse the JSON options: JSON parse error, key is not a string in object'],
    ['json:{"a":1 "b":2}', 'Could not parse the JSON options: JSON parse error, expected separator in dict'],
    ['json:{"a":[1 2]}', 'Could not parse the JSON options: JSON parse error, expected separator in list'],
    ['json:{"a":"\\q"}', 'Could not parse the JSON options: JSON parse error, invalid escape sequence in string'],
    ['json:{"a":@}', "Could not parse the JSON options: JSON parse error, stray '@'"],
  ]
  for (const [text, message] of cases) {
    assert.throws(() => parseJsonOptions(text), (e: unknown) => isImageError(e, 'INVALID_ARGUMENT') && e.message === message, text)
  }
})

test('which operands describe a graph; -f wins over the json: driver', () => {
  assert.equal(describesGraph('disk.qcow2', false), false)
  assert.equal(describesGraph('dir/x:y.qcow2', false), false) // a slash before the colon: a path
  assert.equal(describesGraph('file:disk.qcow2', false), true)
  assert.equal(describesGraph('json:{}', false), true)
  assert.equal(describesGraph('disk.qcow2', true), true)
  assert.equal(operandOptions('json:{"driver":"raw","file.filename":"x"}', false, 'qcow2').get('driver'), 'qcow2')
  assert.deepEqual([...operandOptions('blkdebug::x', false, undefined)], [['filename', 'blkdebug::x']])
})
