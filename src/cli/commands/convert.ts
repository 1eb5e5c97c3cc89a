// qimg convert [-f FMT] [-O FMT] [-o OPTIONS] [-B BACKING [-F FMT]] [-n] [-l SNAPSHOT]
//              [-S SIZE] [-p] [-t CACHE] [-m N] [-q] IN OUT
import { convertImage } from '../../commands/convert.js'
import { ImageError, isImageError } from '../../errors.js'
import { createWithModule } from '../../node/create.js'
import { findFormatModule, formatModules } from '../../formats.js'
import { openImage } from '../../node/open.js'
import { isNbdName } from '../../node/nbd-options.js'
import { isS3Name } from '../../io/s3.js'
import { convertToS3 } from './convert-s3.js'
import { openOperandOptions } from '../block-options.js'
import { FileStorage } from '../../io/file.js'
import { CodecPool, decodeThreads } from '../../node/pool.js'
import { flag, stringOption } from '../getopt.js'
import { parseCreateOptions } from '../create-options.js'
import { parseSize } from '../size.js'
import { openOperand, parseArgs, reportError, type CliContext, type Command } from '../context.js'
import type { BlockDevice } from '../../format/device.js'
import { hasPersistentBitmaps } from '../../format/bitmap-capability.js'
import { addBitmap, bitmapsOf, mergeBitmap, removeBitmap } from './bitmap.js'
import { lookupSecret, secretsOf } from '../secrets.js'
import { BAR_SPEC, cliProgress, PROGRESS_SPEC } from '../progress-option.js'
import { convertPipe } from './convert-pipe.js'
import { optionListCheck, snapshotParam, snapshotParamCheck } from '../option-checks.js'

const snapshotOf = (text: string | undefined) => text === undefined ? undefined : snapshotParam(text)

function supportsBitmaps(device: BlockDevice): boolean {
  const driver = device.driver
  return hasPersistentBitmaps(driver) && driver.storesBitmaps
}

/** convert_check_bitmaps: a source that has bitmaps, none inconsistent (unless skipped). */
async function checkSourceBitmaps(source: BlockDevice, skipBroken: boolean): Promise<void> {
  if (!supportsBitmaps(source)) throw new ImageError('UNSUPPORTED', 'Source lacks bitmap support')
  // QEMU walks its bitmap list, newest first: the last directory entry comes first.
  for (const b of (await bitmapsOf(source)).slice().reverse()) {
    if (!skipBroken && b.inconsistent) throw new ImageError('INVALID_ARGUMENT', `Cannot copy inconsistent bitmap '${b.name}'\nTry --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it`)
  }
}

/**
 * convert_copy_bitmaps: each source bitmap created in the target with its granularity and
 * state, then merged from the source. Created newest first, each ahead of the ones before, so
 * the target's directory keeps the source's order.
 */
async function copyBitmapsTo(source: BlockDevice, target: BlockDevice, skipBroken: boolean, ctx: CliContext): Promise<void> {
  const driver = target.driver
  const index = hasPersistentBitmaps(driver) ? driver.loadedBitmaps().length : 0
  for (const b of (await bitmapsOf(source)).slice().reverse()) {
    if (skipBroken && b.inconsistent) {
      reportError(ctx, `warning: Skipping inconsistent bitmap '${b.name}'`)
      continue
    }
    let added
    try {
      added = addBitmap(target, b.name, b.granularity, { enabled: b.enabled, index })
    } catch (e) {
      if (e instanceof ImageError) throw new ImageError(e.code, `Failed to create bitmap ${b.name}: ${e.message}`, { cause: e })
      throw e
    }
    try {
      mergeBitmap(added, b)
    } catch (e) {
      await removeBitmap(target, b.name)
      if (e instanceof ImageError) throw new ImageError(e.code, `Failed to populate bitmap ${b.name}: ${e.message}`, { cause: e })
      throw e
    }
  }
}

export const convert: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { short: 'O', value: true, key: 'target-format' },
    { short: 'o', value: true, key: 'options', ...optionListCheck },
    { short: 'B', value: true, key: 'backing' },
    { short: 'b', value: true, key: 'backing' },
    { short: 'F', value: true, key: 'backing-format' },
    { short: 'l', value: true, key: 'snapshot', ...snapshotParamCheck },
    { short: 's', value: true, key: 'snapshot-old' },
    { short: 'S', value: true, key: 'sparse' },
    BAR_SPEC,
    { short: 't', value: true, key: 'cache' },
    { short: 'T', value: true, key: 'source-cache' },
    { short: 'm', value: true, key: 'parallel' },
    { short: 'W', value: false, key: 'out-of-order' },
    { short: 'n', value: false, key: 'no-create' },
    { short: 'c', value: false, key: 'compress' },
    { long: 'target-is-zero', value: false },
    { long: 'bitmaps', value: false },
    { long: 'skip-broken-bitmaps', value: false },
    PROGRESS_SPEC,
    { long: 'size', value: true },
  ])
  const targetFormat = stringOption(parsed, 'target-format') ?? 'raw'
  const copyBitmaps = flag(parsed, 'bitmaps')
  const skipBroken = flag(parsed, 'skip-broken-bitmaps')
  if (skipBroken && !copyBitmaps) throw new ImageError('INVALID_ARGUMENT', 'Use of --skip-broken-bitmaps requires --bitmaps')
  const targetModule = findFormatModule(targetFormat)
  if (!targetModule?.create) throw new ImageError('UNSUPPORTED', `convert -O ${targetFormat}: qimg writes ${formatModules.filter((m) => m.create).map((m) => m.name).join(', ')}`)
  const compress = flag(parsed, 'compress')
  if (compress && targetFormat !== 'qcow2' && !targetModule?.compressedWrites) throw new ImageError('INVALID_ARGUMENT', `Compression not supported for format '${targetFormat}'`)
  if (parsed.operands.length < 2) throw new ImageError('INVALID_ARGUMENT', 'Expecting image file name and output file name')
  if (parsed.operands.length > 2) throw new ImageError('UNSUPPORTED', 'convert: concatenating several sources is not supported yet')
  const [source, output] = parsed.operands as [string, string]
  const sparseText = stringOption(parsed, 'sparse')
  const sparseSize = sparseText === undefined ? 4096 : parseSize(sparseText)
  if (sparseSize % 512 !== 0 || sparseSize > 16 * 1024 * 1024) {
    throw new ImageError('INVALID_ARGUMENT', 'Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).')
  }
  const parallelText = stringOption(parsed, 'parallel')
  const parallel = parallelText === undefined ? 8 : Number(parallelText)
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) throw new ImageError('INVALID_ARGUMENT', 'Invalid number of coroutines. Allowed number of coroutines is between 1 and 16')
  const cache = stringOption(parsed, 'cache') ?? 'unsafe'
  const noCreate = flag(parsed, 'no-create')
  const optionTexts = (parsed.all.get('options') ?? []).filter((v): v is string => typeof v === 'string')
  if (noCreate && optionTexts.length > 0) throw new ImageError('INVALID_ARGUMENT', '-o has no effect when skipping image creation')
  const opts = parseCreateOptions(targetFormat, optionTexts)
  const encrypted = opts.has('encrypt.format') || (opts.has('encryption') && opts.get('encryption') !== 'off')
  if (compress && encrypted) throw new ImageError('INVALID_ARGUMENT', 'Compression and encryption not supported at the same time')
  if (compress && (opts.get('preallocation') ?? 'off') !== 'off') throw new ImageError('INVALID_ARGUMENT', 'Compression and preallocation not supported at the same time')
  const backing = stringOption(parsed, 'backing') ?? opts.get('backing_file')
  const backingFormat = stringOption(parsed, 'backing-format') ?? opts.get('backing_fmt')
  if (flag(parsed, 'target-is-zero') && (!noCreate || backing !== undefined)) throw new ImageError('INVALID_ARGUMENT', '--target-is-zero requires use of -n flag and no backing file')

  if (source === '-' || output === '-') {
    return convertPipe(source, output, parsed, ctx, { targetFormat, compress, opts, sparseSize, parallel, noCreate, backing, cache: cache === 'unsafe' ? 'unsafe' : 'writeback' })
  }
  // Worker threads (de)compress: they start only when the source has a compressed cluster (or
  // with -c), and stop when the command ends. Decompression leaves a core to this thread, which
  // reads and writes; compression, the heavy part of -c, gets every core.
  const pool = new CodecPool(decodeThreads())
  const compressPool = new CodecPool()
  const device = await openOperand(source, parsed, { pool, snapshot: snapshotOf(stringOption(parsed, 'snapshot') ?? stringOption(parsed, 'snapshot-old')) }).catch(async (e: unknown) => {
    await pool.close()
    await compressPool.close()
    throw isImageError(e, 'NO_SUCH_SNAPSHOT') ? new ImageError(e.code, "Failed to load snapshot: Can't find snapshot", { cause: e }) : e
  })
  // qemu_progress_init(s.progress, 1.0): a line per percent moved.
  const progress = cliProgress(parsed, ctx, { minSkip: 1 })
  if (isS3Name(output)) {
    const refused = [['-n', noCreate], ['-B', backing !== undefined], ['-c', compress], ['--bitmaps', copyBitmaps]].filter(([, on]) => on).map(([f]) => f as string)
    try {
      await convertToS3(device, { output, format: targetFormat, options: opts, parallel, progress: progress.meter, refused })
    } finally {
      progress.dispose()
      await device.close()
      await pool.close()
      await compressPool.close()
    }
    return 0
  }
  /** Creating the target (bdrv_create): its errors are reported as img_convert does. */
  const creating = async (create: () => Promise<void>): Promise<void> => {
    try {
      await create()
    } catch (e) {
      if (isImageError(e)) throw new ImageError(e.code, `${output}: error while converting ${targetFormat}: ${e.message}`, { cause: e })
      throw e
    }
  }
  let targetSecret: Uint8Array | undefined
  let targetZeroInit = true
  try {
    if (copyBitmaps) await checkSourceBitmaps(device, skipBroken)
    // An NBD export exists already: raw goes straight onto it (bdrv_co_create_opts_simple only
    // checks that it opens), other formats would have to be created inside it.
    const toExport = isNbdName(output)
    if (toExport && !noCreate && targetFormat !== 'raw') throw new ImageError('UNSUPPORTED', `Creating a '${targetFormat}' image inside an NBD export is not supported; use -n or -O raw`)
    if (!noCreate && !toExport) {
      if (backing !== undefined) {
        if (!targetModule!.createOptions?.some((o) => o.name === 'backing_file')) throw new ImageError('INVALID_ARGUMENT', `Backing file not supported for file format '${targetFormat}'`)
        if (backingFormat === undefined) throw new ImageError('INVALID_ARGUMENT', 'Use of backing file requires explicit backing format')
        opts.set('backing_file', backing)
        opts.set('backing_fmt', backingFormat)
      }
      const module = targetModule!
      await creating(async () => {
        const secrets = await secretsOf(parsed)
        targetSecret = await createWithModule(output, module, device.size, opts, (id) => lookupSecret(secrets, id))
      })
      targetZeroInit = typeof module.zeroInit === 'function' ? module.zeroInit(opts) : module.zeroInit !== false
    }
    const secret = targetSecret
    const targetOptions = { format: targetFormat, writable: true, cache: cache === 'unsafe' ? 'unsafe' as const : 'writeback' as const, ...(secret ? { secret: async () => secret } : {}) }
    const target = toExport
      ? await openOperandOptions(output, false, targetFormat, await secretsOf(parsed), targetOptions)
      : await openImage(output, targetOptions)
    if (noCreate && target.size < device.size) {
      await target.close()
      throw new ImageError('INVALID_ARGUMENT', 'output file is smaller than input file')
    }
    try {
      if (copyBitmaps && !supportsBitmaps(target)) throw new ImageError('UNSUPPORTED', `Format driver '${targetFormat}' does not support bitmaps`)
      // img_convert: a target that needs compressed writes gets them as with -c.
      const compressing = compress || target.driver.needsCompressedWrites === true
      await convertImage(device, target, {
        compress: compressing ? { compressors: compressPool.compressors() } : undefined,
        sparseSize, parallel,
        outOfOrder: flag(parsed, 'out-of-order'),
        targetIsZero: (!noCreate && targetZeroInit) || flag(parsed, 'target-is-zero'),
        topLayerOnly: backing !== undefined,
        targetBackingSize: backing !== undefined && !noCreate ? target.backing?.size : undefined,
        progress: progress.meter,
      })
      await target.flush()
      if (copyBitmaps) await copyBitmapsTo(device, target, skipBroken, ctx)
      if (compressing) {
        // QEMU ends a compressed convert by padding the file to a whole sector.
        const file = target.driver.storage as FileStorage
        const length = await file.size()
        if (length % 512) await file.truncate(Math.ceil(length / 512) * 512)
      }
    } finally {
      await target.close()
    }
  } finally {
    progress.dispose()
    await device.close()
    await pool.close()
    await compressPool.close()
  }
  return 0
}
