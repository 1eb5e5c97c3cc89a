// qimg snapshot (-l | -c NAME | -a NAME | -d NAME) [-f FMT] [-U] [-q] IMG
import { ImageError } from '../../errors.js'
import { errnoText } from '../../io/errno.js'
import { hasSnapshots } from '../../format/capabilities.js'
import { describeLayer } from '../../node/open.js'
import { stringOption } from '../getopt.js'
import { cliProgress, PROGRESS_SPEC } from '../progress-option.js'
import { formatSnapshotTable } from '../human.js'
import { oneOperand, openOperand, parseArgs, type Command } from '../context.js'

const EINVAL = 22

export const snapshot: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'l', value: false, key: 'list' },
    { short: 'c', value: true, key: 'create' },
    { short: 'a', value: true, key: 'apply' },
    { short: 'd', value: true, key: 'delete' },
    PROGRESS_SPEC,
  ])
  const actions = ['list', 'create', 'apply', 'delete'].filter((k) => parsed.options.has(k))
  if (actions.length > 1) throw new ImageError('INVALID_ARGUMENT', 'Cannot mix \'-l\', \'-a\', \'-c\', \'-d\'')
  const action = actions[0] ?? 'list'
  const filename = oneOperand(parsed)
  const device = await openOperand(filename, parsed, { writable: action !== 'list', fileReferences: 'ignore' })
  try {
    if (action === 'list') {
      const info = await describeLayer(device)
      ctx.out(formatSnapshotTable(info.snapshots ?? []))
      return 0
    }
    const image = device.driver
    const name = stringOption(parsed, action)!
    const verb = { create: 'create', apply: 'apply', delete: 'delete' }[action as 'create']
    if (!hasSnapshots(image)) {
      // What qemu-img says for a format without internal snapshots (raw, vdi): create gets
      // -ENOTSUP as a number, delete finds no snapshot, apply is refused by the block layer.
      const why = { create: '-95 (Operation not supported)', delete: 'snapshot not found', apply: 'Block driver does not support snapshots' }[verb]
      throw new ImageError('UNSUPPORTED', `Could not ${verb} snapshot '${name}': ${why}`)
    }
    // qemu-img snapshot has no -p: --progress=json and SIGUSR1 are qimg's. The drivers report no
    // steps inside an action, so it is one phase, named after it, of one unit.
    const progress = cliProgress(parsed, ctx, { bar: false })
    try {
      progress.meter.phase(verb, 1)
      if (action === 'create') await image.createSnapshot(name)
      else if (action === 'apply') await image.applySnapshot(name)
      else await image.deleteSnapshot(name)
      progress.meter.end()
    } catch (e) {
      if (!(e instanceof ImageError)) throw e
      // qemu-img snapshot -c reports bdrv_snapshot_create's errno alone: "-22 (Invalid argument)".
      const errno = (e as ImageError & { errno?: number }).errno ?? EINVAL
      const qemuText = verb === 'create' ? `Could not create snapshot '${name}': ${-errno} (${errnoText(errno)})` : undefined
      throw new ImageError(e.code, `Could not ${verb} snapshot '${name}': ${e.message}`, { cause: e, ...(qemuText === undefined ? {} : { qemuText }) })
    } finally {
      progress.dispose()
    }
    return 0
  } finally {
    await device.close()
  }
}
