// The package as users get it: `npm pack`, then `npm install --ignore-scripts --prefer-offline` of the
// tarball into a scratch project (no compiler, no install scripts: zstd-napi stays unbuilt, so
// zstd runs in WebAssembly). Through the installed package — its CLI and its library entry —
// every format and codec: images qemu-img made read bit-exact, images written compressed
// (zlib, zstd) pass qemu-img compare, LUKS opens with its passphrase. The tarball ships a
// LICENSE, no tests, and source maps only beside the sources they name.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, posix, resolve } from 'node:path'
import { needTools, run, runOk, tempDir } from '../helpers/oracle.js'
import { makeWebImages } from '../helpers/web-images.js'

const ROOT = resolve(import.meta.dirname, '../../..')
const scratch = tempDir('qimg-install-')
const sha256Of = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')
after(() => scratch.cleanup())

async function npm(args: string[], cwd: string): Promise<string> {
  const r = await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd })
  assert.equal(r.code, 0, `npm ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

test('the packed tarball installs without scripts and runs every format and codec', { timeout: 1_200_000 }, async (t) => {
  if (!needTools(t, 'qemu-img', 'qemu-io', 'npm')) return
  // --ignore-scripts: packing must not rebuild dist/ under the tests running beside this one.
  const packed = JSON.parse(await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', scratch.path], ROOT)) as { filename: string; files: { path: string }[] }[]
  const files = packed[0]!.files.map((f) => f.path)
  assert.ok(files.includes('LICENSE') && files.includes('dist/src/browser.js') && files.includes('dist/src/index.d.ts'))
  assert.deepEqual(files.filter((f) => /(^|\/)test\//.test(f)), [], 'no tests in the tarball')
  for (const map of files.filter((f) => f.endsWith('.map'))) {
    const { sources } = JSON.parse(readFileSync(join(ROOT, map), 'utf8')) as { sources: string[] }
    for (const source of sources) assert.ok(files.includes(posix.normalize(posix.join(posix.dirname(map), source))), `${map} names ${source}, not shipped`)
  }

  const project = join(scratch.path, 'project')
  mkdirSync(project)
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', type: 'module', private: true }))
  // --prefer-offline, not --offline: `npm ci` caches the dependencies' tarballs but not always
  // their registry documents, which resolving the tarball's ranges needs (ENOTCACHED otherwise).
  await npm(['install', '--ignore-scripts', '--prefer-offline', join(scratch.path, packed[0]!.filename)], project)
  assert.ok(!existsSync(join(project, 'node_modules/zstd-napi/build')), 'zstd-napi must stay unbuilt (the WebAssembly fallback is what runs)')
  const cli = join(project, 'node_modules/.bin/qimg')

  const dir = join(scratch.path, 'images')
  mkdirSync(dir)
  const images = await makeWebImages(dir)
  for (const format of ['vdi', 'vmdk', 'vpc', 'qcow', 'raw']) {
    // (qemu-img's raw of each: vpc rounds the size up to its CHS geometry)
    await runOk('qemu-img', ['convert', '-O', format, 'source.raw', `made.${format}`], { cwd: dir })
    await runOk('qemu-img', ['convert', '-f', format, '-O', 'raw', `made.${format}`, `made-${format}.raw`], { cwd: dir })
    images.push({ name: format, file: `made.${format}`, raw: `made-${format}.raw` })
  }
  await runOk('qemu-img', ['convert', '--object', 'secret,id=s0,data=pw', '-O', 'luks', '-o', 'key-secret=s0,iter-time=10', 'source.raw', 'source.luks'], { cwd: dir })

  // The CLI of the installed package reads every image qemu-img made.
  for (const image of images) {
    const out = join(dir, `${image.name}.installed.raw`)
    const args = image.secret
      ? ['convert', '--object', `secret,id=s0,data=${image.secret}`, '--image-opts', `driver=qcow2,file.filename=${image.file},encrypt.key-secret=s0`, '-O', 'raw', out]
      : ['convert', '-O', 'raw', image.file, out]
    const r = await run(cli, args, { cwd: dir })
    assert.equal(r.code, 0, `${image.name}: ${r.stderr}`)
    assert.ok(readFileSync(out).equals(readFileSync(join(dir, image.raw))), image.name)
  }
  const luks = await run(cli, ['convert', '--object', 'secret,id=s0,data=pw', '--image-opts', 'driver=luks,file.filename=source.luks,key-secret=s0', '-O', 'raw', 'luks-format.raw'], { cwd: dir })
  assert.equal(luks.code, 0, luks.stderr)
  assert.ok(readFileSync(join(dir, 'luks-format.raw')).equals(readFileSync(join(dir, 'source.raw'))), 'luks format')

  // It writes compressed clusters with both codecs, and qemu-img reads them back.
  for (const type of ['zlib', 'zstd']) {
    const r = await run(cli, ['convert', '-c', '-O', 'qcow2', '-o', `compression_type=${type}`, 'source.raw', `written-${type}.qcow2`], { cwd: dir })
    assert.equal(r.code, 0, `${type}: ${r.stderr}`)
    await runOk('qemu-img', ['check', `written-${type}.qcow2`], { cwd: dir })
    await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', `written-${type}.qcow2`, 'source.raw'], { cwd: dir })
  }

  // The library entry ("node" condition) opens images by path, with the same codecs.
  const script = join(project, 'read.mjs')
  writeFileSync(script, `import { openImage } from 'qimg'
import { createHash } from 'node:crypto'
for (const file of process.argv.slice(2)) {
  const disk = await openImage(file)
  const hash = createHash('sha256').update(await disk.read(0, disk.size)).digest('hex')
  await disk.close()
  console.log(hash)
}
`)
  const plain = ['zlib.qcow2', 'zstd.qcow2', 'chain/top.qcow2']
  const hashes = (await runOk(process.execPath, [script, ...plain.map((f) => join(dir, f))], { cwd: project })).trim().split('\n')
  const expected = ['zlib.raw', 'zstd.raw', 'chain.raw'].map((f) => sha256Of(join(dir, f)))
  assert.deepEqual(hashes, expected)
})
