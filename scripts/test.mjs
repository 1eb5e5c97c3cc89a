// Runs the compiled tests: every dist/test/**/*.test.js file through Node's test runner
// (Node 20's runner would also execute helper modules found under a directory argument).
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? find(path) : path.endsWith('.test.js') ? [path] : []
  })
}

const files = find('dist/test').sort()
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...process.argv.slice(2), ...files], { stdio: 'inherit' })
process.exit(result.status ?? 1)
