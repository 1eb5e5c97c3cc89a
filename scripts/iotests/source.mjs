// QEMU's qemu-iotests for the installed QEMU: the Debian source package of the installed
// qemu-utils, fetched through a private deb-src list (the system's apt setup is left untouched)
// and unpacked once into the work directory.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'

/** The source version of the installed qemu-utils, e.g. "1:7.2+dfsg-7+deb12u18". */
export function installedQemuVersion() {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${source:Version}', 'qemu-utils'], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error('iotests: qemu-utils is not installed (apt-get install -y qemu-utils)')
  }
}

function debSrcList() {
  // The same mirrors as the system's deb lines, as deb-src.
  const keyring = 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
  return [
    `Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n${keyring}\n`,
    `Types: deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n${keyring}\n`,
  ].join('\n')
}

/**
 * Returns the unpacked QEMU source tree for the installed version under `workDir`, fetching it
 * when it is not there yet.
 */
export function qemuSource(workDir) {
  const version = installedQemuVersion()
  const plain = version.replace(/^\d+:/, '')
  const srcDir = path.join(workDir, `qemu-${plain}`)
  if (existsSync(path.join(srcDir, 'tests', 'qemu-iotests', 'check'))) return srcDir
  const aptDir = path.join(workDir, 'apt')
  const downloadDir = path.join(workDir, 'download')
  mkdirSync(path.join(aptDir, 'lists', 'partial'), { recursive: true })
  mkdirSync(path.join(aptDir, 'sources.list.d'), { recursive: true })
  mkdirSync(downloadDir, { recursive: true })
  writeFileSync(path.join(aptDir, 'sources.list.d', 'qimg-deb-src.sources'), debSrcList())
  const privateApt = [
    '-o', 'Dir::Etc::sourcelist=/dev/null',
    '-o', `Dir::Etc::sourceparts=${path.join(aptDir, 'sources.list.d')}`,
    '-o', `Dir::State::Lists=${path.join(aptDir, 'lists')}`,
    '-o', 'APT::Sandbox::User=root',
  ]
  console.log(`iotests: fetching the source of qemu ${version} (Debian source package)`)
  execFileSync('apt-get', [...privateApt, '-qq', 'update'], { stdio: 'inherit' })
  execFileSync('apt-get', [...privateApt, '-qq', 'source', '--download-only', `qemu=${version}`], { cwd: downloadDir, stdio: 'inherit' })
  const dsc = readdirSync(downloadDir).find((name) => name.endsWith('.dsc') && name.includes(plain))
  if (dsc === undefined) throw new Error(`iotests: apt-get source left no .dsc for qemu ${version} in ${downloadDir}`)
  rmSync(srcDir, { recursive: true, force: true })
  try {
    execFileSync('dpkg-source', ['-x', dsc, srcDir], { cwd: downloadDir, stdio: ['ignore', 'ignore', 'inherit'] })
  } catch (e) {
    throw new Error(`iotests: dpkg-source -x failed (apt-get install -y dpkg-dev): ${e.message}`)
  }
  return srcDir
}
