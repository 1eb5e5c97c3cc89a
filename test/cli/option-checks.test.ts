// The checks qemu-img makes while parsing its command line: -o option lists
// (is_valid_option_list) and -l snapshot parameters (internal_snapshot_opts), iotest 178.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkOptionList, snapshotParam } from '../../src/cli/option-checks.js'
import { getopt } from '../../src/cli/getopt.js'
import { isImageError } from '../../src/errors.js'

const invalid = (message: string) => (e: unknown) => isImageError(e, 'INVALID_ARGUMENT') && e.message === message

test('option lists: empty, a leading comma and an odd run of trailing commas are refused', () => {
  for (const text of ['', ',', ',a=1', 'a=1,', 'a=1,,,']) assert.throws(() => checkOptionList(text), invalid(`Invalid option list: ${text}`), text)
  for (const text of ['a=1', 'a=1,b=2', 'a=1,,', 'a=x,,y']) assert.doesNotThrow(() => checkOptionList(text), text)
})

test('snapshot parameters: id and name only; a bare value is an ID or name', () => {
  assert.deepEqual(snapshotParam('snap1'), 'snap1')
  assert.deepEqual(snapshotParam('snapshot.id=1,snapshot.name=a'), { id: '1', name: 'a' })
  assert.throws(() => snapshotParam('snapshot.foo=bar'), invalid("Invalid parameter 'snapshot.foo'\nqimg: Failed in parsing snapshot param 'snapshot.foo=bar'"))
})

test('getopt runs an option check as the option is parsed, before later options', () => {
  const specs = [{ short: 'o', value: true, check: checkOptionList }, { short: 'x', value: false }]
  assert.throws(() => getopt(['-o', ',', '-y'], specs), invalid('Invalid option list: ,'))
  assert.equal(getopt(['-o', 'a=1'], specs).options.get('o'), 'a=1')
})
