// qimg amend [-f FMT] -o OPTIONS [-q] IMG
import { amendImage } from '../../commands/amend.js'
import { ImageError } from '../../errors.js'
import { isAmendable } from '../../format/amend-capability.js'
import { FileStorage } from '../../io/file.js'
import { parseOptionString } from '../image-opts.js'
import { oneOperand, openOperand, operandImage, parseArgs, type Command } from '../context.js'
import { optionListCheck } from '../option-checks.js'
import { BAR_SPEC, cliProgress, PROGRESS_SPEC } from '../progress-option.js'

export const amend: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'o', value: true, key: 'options', ...optionListCheck },
    BAR_SPEC,
    PROGRESS_SPEC,
    { short: 't', value: true, key: 'cache' },
    { long: 'force', value: false },
  ])
  const texts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
  if (texts.length === 0) throw new ImageError('INVALID_ARGUMENT', 'Must specify options (-o)')
  const filename = oneOperand(parsed)
  // Opened as qemu-img amend opens it: with its backing chain and its external data file.
  // --image-opts and --object (an encrypted image's secret) as every image-opening command.
  const open = () => openOperand(filename, parsed, { writable: true })
  const path = operandImage(filename, parsed).filename
  const current = await openOperand(filename, parsed, { fileReferences: 'ignore' })
  const format = current.driver.format
  const driver = current.driver
  await current.close()
  // As qemu-img: the image opens first; a format without amend (raw, vdi) is refused before
  // the options are even parsed, then their names are checked against the format's amend
  // options (qemu_opts_do_parse over the driver's amend_opts); the values are the format's.
  if (!isAmendable(driver)) throw new ImageError('UNSUPPORTED', `Format driver '${format}' does not support option amendment`)
  const names = driver.amendOptionNames
  const opts = new Map<string, string>()
  for (const text of texts) for (const [k, v] of parseOptionString(text)) opts.set(k, v)
  for (const key of opts.keys()) {
    if (names.createOnly.includes(key)) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${key}'\nThis option is only supported for image creation`)
    if (!names.amendable.includes(key)) throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${key}'`)
  }
  // qemu_progress_init(progress, 1.0): 0 before, 100 after (the drivers report no steps here).
  const progress = cliProgress(parsed, ctx, { minSkip: 1 })
  try {
    progress.meter.phase('amend', 1)
    await amendImage(open, () => FileStorage.open(path, { writable: true }), opts)
    progress.meter.add(1)
    progress.meter.end()
  } finally {
    progress.dispose()
  }
  return 0
}
