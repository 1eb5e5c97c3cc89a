// Oracle: `qimg info` (JSON and human) and `qimg map --output=json` print exactly what qemu-img
// prints, for every image of the read matrix, run from the same directory with the same name.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { join } from 'node:path'
import { needTools, tempDir } from '../helpers/oracle.js'
import { buildImage, imageMatrix, qemuImgFor, qimgFor, type ImageRef } from './images.js'

const root = tempDir('qimg-oracle-info-')
after(() => root.cleanup())

/**
 * Runs the same command through qemu-img and qimg and asserts identical stdout and exit code.
 * `map` also reports the host file's holes, which the filesystem may still rearrange after the
 * image was synced (ext4 converting unwritten extents): when the first answers differ, qimg runs
 * again between two qemu-img runs and must equal one of them.
 */
async function assertSameOutput(ref: ImageRef, args: string[]): Promise<string> {
  const argv = [...args, ref.file]
  let [theirs, ours] = await Promise.all([qemuImgFor(ref, argv), qimgFor(ref, argv)])
  if (args[0] === 'map' && ours.stdout !== theirs.stdout) {
    const before = await qemuImgFor(ref, argv)
    ours = await qimgFor(ref, argv)
    const afterwards = await qemuImgFor(ref, argv)
    theirs = ours.stdout === before.stdout ? before : afterwards
  }
  assert.equal(theirs.code, 0, `qemu-img ${argv.join(' ')}: ${theirs.stderr}`)
  assert.equal(ours.code, theirs.code, `qimg ${argv.join(' ')} exit code (stderr: ${ours.stderr})`)
  assert.equal(ours.stdout, theirs.stdout, `qimg ${argv.join(' ')} output`)
  return theirs.stdout
}

describe('info and map equal qemu-img on the read matrix', { concurrency: 3 }, () => {
  for (const image of imageMatrix()) {
    it(image.name, async (t) => {
      if (!needTools(t, 'qemu-img', 'qemu-io')) return
      const ref = await buildImage(image, mkdtempSync(join(root.path, 'case-')), { sync: true })
      // actual-size is compared too: both programs stat the same file (st_blocks × 512).
      const json = await assertSameOutput(ref, ['info', '--output=json'])
      for (const pattern of image.expect ?? []) assert.match(json, pattern, 'the builder made the intended image')
      const map = await assertSameOutput(ref, ['map', '--output=json'])
      for (const pattern of image.expectMap ?? []) assert.match(map, pattern, 'the builder made the intended image')
      await assertSameOutput(ref, ['info'])
    })
  }
})
