// The disk of an OVA (DMTF DSP0243 OVF 2.1, section 5.3: an OVF package as one tar file, the
// .ovf descriptor its first member): the file the first <Disk> names through its ovf:fileRef and
// the <References> <File ovf:href>, else the first .vmdk member. Read in place, never unpacked.
import { ImageError } from '../errors.js'
import { SliceStorage } from '../io/slice.js'
import type { ReadableStorage } from '../io/storage.js'
import { listTar, type TarMember } from './tar.js'

/** Largest OVF descriptor qimg reads (they are a few KiB). */
const MAX_OVF_BYTES = 4 * 1024 * 1024

/** Whether `name` is an OVA file by its extension (how qimg knows to look inside). */
export const isOvaName = (name: string): boolean => /\.ova$/i.test(name)

/** The attributes of every `<TAG …>` element (any namespace prefix), in document order. */
function elements(xml: string, tag: string): Map<string, string>[] {
  const out: Map<string, string>[] = []
  for (const m of xml.matchAll(new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${tag}\\b([^>]*)>`, 'g'))) {
    const attributes = new Map<string, string>()
    for (const a of m[1]!.matchAll(/(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attributes.set(a[1]!, a[2] ?? a[3]!)
    out.push(attributes)
  }
  return out
}

/** The member name the OVF descriptor's first disk refers to, if it names one. */
export function ovfDiskHref(ovf: string): string | undefined {
  const files = elements(ovf, 'File')
  for (const disk of elements(ovf, 'Disk')) {
    const ref = disk.get('fileRef')
    const file = files.find((f) => f.get('id') === ref)
    const href = file?.get('href')
    if (href !== undefined) return href
  }
  return undefined
}

/** The disk member of the OVA in `archive`, as a storage named ARCHIVE/MEMBER. */
export async function openOvaDisk(archive: ReadableStorage): Promise<ReadableStorage> {
  const file = archive.name
  const members = await listTar(archive)
  const ovf = members.find((m) => /\.ovf$/i.test(m.name))
  let disk: TarMember | undefined
  if (ovf) {
    if (ovf.size > MAX_OVF_BYTES) throw new ImageError('UNSUPPORTED', `${file}: OVF descriptor ${ovf.name} of ${ovf.size} bytes is over ${MAX_OVF_BYTES}`, { file })
    const bytes = await archive.read(ovf.offset, ovf.size)
    const href = ovfDiskHref(new TextDecoder().decode(bytes))
    if (href !== undefined) {
      disk = members.find((m) => m.name === href || m.name === `./${href}`)
      if (!disk) throw new ImageError('CORRUPT', `${file}: the OVF descriptor ${ovf.name} names disk file '${href}', which is not in the archive`, { file })
    }
  }
  disk ??= members.find((m) => /\.vmdk$/i.test(m.name))
  if (!disk) throw new ImageError('NOT_AN_IMAGE', `${file}: OVA archive has no disk (no OVF <Disk> file and no .vmdk member)`, { file })
  return new SliceStorage(archive, disk.offset, disk.size, `${file}/${disk.name}`)
}
