// Oracle: an OVA (a tar of an OVF descriptor and the disks it names) opened in place by qimg info,
// map and convert: the disk the OVF names (not the first .vmdk), read as qemu-img reads the same
// streamOptimized VMDK unpacked; without the OVF's reference, the first .vmdk member.
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { needTools, qimg, run, runOk, tempDir } from '../helpers/oracle.js'
import { writePatternedRaw } from './images.js'

const root = tempDir('qimg-oracle-ova-')
after(() => root.cleanup())

const ovf = (href: string) => `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="decoy.vmdk" ovf:id="file0"/>
    <File ovf:href="${href}" ovf:id="file1"/>
  </References>
  <DiskSection><Info>Virtual disk information</Info>
    <Disk ovf:capacity="6" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
</Envelope>
`

describe('qimg opens an OVA in place', () => {
  it('info, map and convert take the disk the OVF names, as qemu-img reads it unpacked', async (t) => {
    if (!needTools(t, 'qemu-img', 'tar')) return
    const dir = root.path
    writePatternedRaw(root.file('src.raw'), 6 * 1024 * 1024, 3)
    writePatternedRaw(root.file('decoy.raw'), 1024 * 1024, 4)
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'src.raw', 'vm-disk1.vmdk'], { cwd: dir })
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'decoy.raw', 'decoy.vmdk'], { cwd: dir })
    writeFileSync(root.file('vm.ovf'), ovf('vm-disk1.vmdk'))
    await runOk('tar', ['-cf', 'vm.ova', 'vm.ovf', 'decoy.vmdk', 'vm-disk1.vmdk'], { cwd: dir })

    const o = await qimg(['convert', '-O', 'raw', 'vm.ova', 'ours.raw'], { cwd: dir })
    assert.equal(o.code, 0, o.stderr)
    await runOk('qemu-img', ['convert', '-O', 'raw', 'vm-disk1.vmdk', 'theirs.raw'], { cwd: dir })
    assert.ok(readFileSync(root.file('ours.raw')).equals(readFileSync(root.file('theirs.raw'))), 'convert: the named disk')

    const [om, tm] = [await qimg(['map', '--output=json', 'vm.ova'], { cwd: dir }), await run('qemu-img', ['map', '--output=json', 'vm-disk1.vmdk'], { cwd: dir })]
    assert.equal(om.stdout, tm.stdout)
    const info = JSON.parse((await qimg(['info', '--output=json', 'vm.ova'], { cwd: dir })).stdout)
    const theirs = JSON.parse(await runOk('qemu-img', ['info', '--output=json', 'vm-disk1.vmdk'], { cwd: dir }))
    assert.equal(info.format, 'vmdk')
    assert.equal(info['virtual-size'], theirs['virtual-size'])
    assert.equal(info['format-specific'].data.cid, theirs['format-specific'].data.cid)
    assert.equal(info.filename, 'vm.ova/vm-disk1.vmdk')

    // No <Disk> reference: the first .vmdk member.
    writeFileSync(root.file('vm.ovf'), '<Envelope/>\n')
    await runOk('tar', ['-cf', 'plain.ova', 'vm.ovf', 'decoy.vmdk', 'vm-disk1.vmdk'], { cwd: dir })
    assert.equal((await qimg(['compare', 'plain.ova', 'decoy.raw'], { cwd: dir })).code, 0)
    // An OVF naming a file the archive lacks, and a file that is not a tar: typed errors.
    writeFileSync(root.file('vm.ovf'), ovf('missing.vmdk'))
    await runOk('tar', ['-cf', 'broken.ova', 'vm.ovf', 'decoy.vmdk'], { cwd: dir })
    const broken = await qimg(['info', 'broken.ova'], { cwd: dir })
    assert.equal(broken.code, 1)
    assert.match(broken.stderr, /names disk file 'missing.vmdk', which is not in the archive/)
    const notTar = await qimg(['info', '-f', 'vmdk', 'src.raw.ova'], { cwd: dir })
    assert.equal(notTar.code, 1)
  })
})
