// blkdebug's rule engine (QEMU block/blkdebug.c) on memory storage: events arm errors, requests
// of the armed kinds fail with strerror texts, once/sector/iotype/state narrow them, set-state
// moves between states, and rules read from an ini config or options as QEMU reads them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isImageError } from '../../src/errors.js'
import { BlkdebugStorage } from '../../src/io/blkdebug.js'
import { blkdebugRules, parseBlkdebugConfig, type BlkdebugRule } from '../../src/io/blkdebug-rules.js'
import { MemoryStorage } from '../../src/io/memory.js'

function node(config: string, options: Map<string, string> = new Map()): BlkdebugStorage {
  return new BlkdebugStorage(new MemoryStorage(new Uint8Array(64 * 1024)), blkdebugRules(parseBlkdebugConfig(config, 'test.cfg'), options))
}

async function fails(promise: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(promise, (e: unknown) => isImageError(e, 'IO') && e.message === message)
}

test('an event arms its rule: requests fail until then, and after it every time (without once)', async () => {
  const s = node('[inject-error]\nevent = "l2_load"\n')
  await s.read(0, 512)
  s.debugEvent('l1_update')
  await s.read(0, 512)
  s.debugEvent('l2_load')
  await fails(s.read(0, 512), 'Input/output error')
  await fails(s.write(0, new Uint8Array(512)), 'Input/output error')
  await fails(s.read(4096, 512), 'Input/output error')
})

test('once: the rule fails one request and is gone, even when its event fires again', async () => {
  const s = node('[inject-error]\nevent = "l2_load"\nonce = "on"\nerrno = "28"\n')
  s.debugEvent('l2_load')
  await fails(s.read(0, 512), 'No space left on device')
  await s.read(0, 512)
  s.debugEvent('l2_load')
  await s.read(0, 512)
})

test('sector and iotype narrow the requests that fail', async () => {
  const s = node('[inject-error]\nevent = "read_aio"\nsector = "8"\niotype = "read"\n')
  s.debugEvent('read_aio')
  await s.read(0, 4096) // sector 8 is byte 4096: not covered
  await fails(s.read(4096, 1), 'Input/output error')
  await fails(s.read(0, 4097), 'Input/output error')
  await s.write(4096, new Uint8Array(512)) // a write is not a read
})

test('set-state: rules of other states stay quiet; state 0 matches any', async () => {
  const s = node([
    '# two steps', '[set-state]', 'state = "1"', 'event = "l2_load"', 'new_state = "2"', '',
    '[inject-error]', 'state = "2"', 'event = "read_aio"', 'errno = "5"', '',
    '[inject-error]', 'state = "1"', 'event = "write_aio"', 'errno = "1"',
  ].join('\n'))
  s.debugEvent('read_aio') // state 1: the read_aio rule is for state 2
  await s.read(0, 512)
  s.debugEvent('l2_load')
  s.debugEvent('write_aio') // now state 2: the write_aio rule is for state 1
  await s.read(0, 512)
  s.debugEvent('read_aio')
  await fails(s.read(0, 512), 'Input/output error')
})

test('the none event fires when the node opens; flush is checked only after writes', async () => {
  const s = node('[inject-error]\nevent = "none"\niotype = "flush"\n')
  await s.read(0, 512) // armed, but only for flushes
  await s.flush() // nothing written since the last flush: no request reaches blkdebug
  await s.write(0, new Uint8Array(512))
  await fails(s.flush(), 'Input/output error')
})

test('options give the same rules as a config file; the file comes first, inject-error before set-state', () => {
  const fromFile = blkdebugRules(parseBlkdebugConfig('[set-state]\nevent = "l2_load"\nnew_state = "3"\n[inject-error]\nevent = "l1_update"\n', 'a.cfg'), new Map())
  const fromOptions = blkdebugRules([], new Map([['set-state.0.event', 'l2_load'], ['set-state.0.new_state', '3'], ['inject-error.0.event', 'l1_update']]))
  assert.deepEqual(fromOptions, fromFile)
  assert.deepEqual(fromFile.map((r: BlkdebugRule) => r.action), ['inject-error', 'set-state'])
  const single = blkdebugRules([], new Map([['inject-error.event', 'l2_load'], ['inject-error.errno', '28']]))
  assert.equal(single.length, 1)
  assert.equal((single[0] as { errno: number }).errno, 28)
})

test('malformed rules fail with QEMU\'s messages', () => {
  const cases: [string, Map<string, string>, string][] = [
    ['event = "l2_load"\n', new Map(), 'test.cfg:1: no group defined'],
    ['[inject-error]\nevent l2_load\n', new Map(), 'test.cfg:2: parse error'],
    ['[inject-error]\nerrno = "5"\n', new Map(), 'Missing event name for rule'],
    ['[inject-error]\nevent = "nosuch"\n', new Map(), 'invalid parameter value: nosuch'],
    ['[inject-error]\nevent = "l2_load"\niotype = "nosuch"\n', new Map(), 'invalid parameter value: nosuch'],
    ['[inject-error]\nevent = "l2_load"\nerrno = "x"\n', new Map(), "Parameter 'errno' expects a number"],
    ['[inject-error]\nevent = "l2_load"\nonce = "yes"\n', new Map(), "Parameter 'once' expects 'on' or 'off'"],
    ['[other]\nevent = "l2_load"\n', new Map(), "There is no option group 'other'"],
    ['', new Map([['inject-error.0.foo', 'x']]), "[inject-error] section doesn't support the option 'foo'"],
    ['', new Map([['inject-error.0.event', 'l2_load'], ['inject-error.event', 'x']]), "Unknown option 'event' for [inject-error]"],
    ['', new Map([['inject-error.0.event', 'l2_load'], ['inject-error.2.event', 'x']]), "Unused option '2.event' for [inject-error]"],
  ]
  for (const [config, options, message] of cases) {
    assert.throws(() => blkdebugRules(parseBlkdebugConfig(config, 'test.cfg'), options), (e: unknown) => isImageError(e, 'INVALID_ARGUMENT') && e.message === message, message)
  }
})
