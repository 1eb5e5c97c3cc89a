// --progress=json output (qimg's extension, src/cli/progress-option.ts) parsed and judged.
import assert from 'node:assert/strict'

/** One line of --progress=json. */
export interface ProgressLine { phase: string; done: number; total: number; percent: number; elapsed: number }

/**
 * Parses every line of `stderr` as a JSON progress object and checks the rules: the fields in
 * order, each phase's total constant and its done never going back, the overall percent and the
 * elapsed time never going back, the phases in order, each ending with its total done, the last
 * line at 100 %. Returns the lines.
 */
export function checkJsonProgress(stderr: string, phases: string[]): ProgressLine[] {
  const lines = stderr.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ProgressLine)
  assert.ok(lines.length >= 2, stderr)
  let last = lines[0]!
  for (const line of lines) {
    assert.deepEqual(Object.keys(line), ['phase', 'done', 'total', 'percent', 'elapsed'])
    assert.ok(line.percent >= last.percent, `percent went back: ${JSON.stringify(last)} then ${JSON.stringify(line)}`)
    assert.ok(line.elapsed >= last.elapsed, 'elapsed went back')
    if (line.phase === last.phase) {
      assert.equal(line.total, last.total, `total of ${line.phase} changed`)
      assert.ok(line.done >= last.done, `done went back in ${line.phase}`)
    }
    assert.ok(line.done <= line.total, `done past total: ${JSON.stringify(line)}`)
    last = line
  }
  assert.deepEqual([...new Set(lines.map((l) => l.phase))], phases)
  // Each phase ends with its whole total done; the last line is 100 %.
  for (const phase of phases) {
    const end = lines.filter((l) => l.phase === phase).at(-1)!
    assert.equal(end.done, end.total, `${phase} ended at ${end.done} of ${end.total}`)
  }
  assert.equal(last.percent, 100)
  return lines
}
