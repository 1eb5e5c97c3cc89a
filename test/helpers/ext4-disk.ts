// A disk image as the streaming tests want one: a sparse raw file of `size` bytes holding an
// ext4 file system filled from the system's files (mkfs.ext4 -d), built once per test process.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const FILL_DIR = '/usr/share'
const built = new Map<string, string>()

/**
 * Path of the raw ext4 disk (4 GiB by default, filled from /usr/share, ~750 MB) in `dir` (the
 * test file's, which removes it); `fill` names a smaller tree for a lighter disk.
 */
export function ext4Disk(dir: string, size = 4 * 1024 ** 3, fill = FILL_DIR): string {
  const key = `${dir}:${size}:${fill}`
  const known = built.get(key)
  if (known) return known
  const path = join(dir, `disk-${built.size}.raw`)
  // -E root_owner: files keep no host ownership; errors in unreadable files stop mkfs, so only
  // a tree everyone can read is used.
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', existsSync(fill) ? fill : '/etc', path, `${Math.floor(size / 1024)}k`], { stdio: ['ignore', 'ignore', 'pipe'] })
  built.set(key, path)
  return path
}
