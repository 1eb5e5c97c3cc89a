// qimg check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-U] IMG — exit 0 clean,
// 1 check errors, 2 corruptions, 3 leaks only, 63 format has no check (as qemu-img).
import { ImageError, isImageError } from '../../errors.js'
import { openFailure } from '../block-options.js'
import { probeFormat } from '../../format/probe.js'
import { findFormatModule } from '../../formats.js'
import { referencedOpener } from '../../format/chain.js'
import { nodeFileHost } from '../../node/open.js'
import { FileStorage } from '../../io/file.js'
import type { CheckReport } from '../../format/capabilities.js'
import type { FormatCheckOptions } from '../../format/module.js'
import { flag, stringOption } from '../getopt.js'
import { cliProgress, PROGRESS_SPEC } from '../progress-option.js'
import { checkHuman as human, checkJson as json } from '../check-text.js'
import { oneOperand, openOperand, operandImage, outputFormat, parseArgs, reportError, type Command } from '../context.js'

/** The exit code qemu-img check gives a result. */
function exitCode(r: CheckReport): number {
  if (r.checkErrors) return 1
  if (r.corruptions) return 2
  if (r.leaks) return 3
  return 0
}

/**
 * qemu-img check through the format's module: QEMU's message and 63 when it has no check, or
 * its check cannot do what was asked (vdi with -r: -ENOTSUP). After a repair the image is checked
 * again, as img_check does, and the counts repaired are kept from the first pass.
 */
export const check: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'output', value: true },
    { short: 'r', long: 'repair', value: true, key: 'repair' },
    { short: 'T', long: 'cache', value: true, key: 'cache' },
    PROGRESS_SPEC,
  ])
  const output = outputFormat(parsed)
  const operand = oneOperand(parsed)
  const { filename, format: formatOption } = operandImage(operand, parsed)
  const repair = stringOption(parsed, 'repair')
  if (repair !== undefined && repair !== 'leaks' && repair !== 'all') throw new ImageError('INVALID_ARGUMENT', `Unknown option value for -r (expecting 'leaks' or 'all'): ${repair}`)
  const quiet = flag(parsed, 'quiet')
  const storage = await FileStorage.open(filename, { writable: repair !== undefined })
  try {
    const format = formatOption ?? await probeFormat(storage)
    const module = findFormatModule(format)
    if (!module?.check) {
      reportError(ctx, 'This image format does not support checks')
      return 63
    }
    const options: FormatCheckOptions = {
      report: (line) => ctx.err(line + '\n'),
      // Files the image is made of (VMDK extents) open as the chain opener opens them.
      openReferenced: parsed.options.has('untrusted') ? undefined : referencedOpener(storage.name, nodeFileHost),
      openImage: async () => (await openOperand(operand, parsed, { fileReferences: 'ignore' })).close(),
    }
    let result: CheckReport
    // qemu-img check has no -p: --progress=json and SIGUSR1 are qimg's.
    const progress = cliProgress(parsed, ctx, { bar: false })
    try {
      result = await module.check(storage, { ...options, fix: repair as 'leaks' | 'all' | undefined, progress: progress.meter })
      progress.meter.end()
    } catch (e) {
      if (isImageError(e, 'UNSUPPORTED') && e.qemuText === 'This image format does not support checks') {
        reportError(ctx, e.qemuText)
        return 63
      }
      throw openFailure(operand, e)
    } finally {
      progress.dispose()
    }
    if (result.failed) {
      reportError(ctx, `Check failed: ${result.failed}`)
      return 1
    }
    if (result.corruptionsFixed || result.leaksFixed) {
      const fixed = { leaksFixed: result.leaksFixed, corruptionsFixed: result.corruptionsFixed }
      if (output === 'human' && !quiet) {
        ctx.out(`The following inconsistencies were found and repaired:\n\n    ${fixed.leaksFixed} leaked clusters\n    ${fixed.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`)
      }
      result = { ...(await module.check(storage, options)), ...fixed }
    }
    // qemu-img names the operand as given (the option string with --image-opts).
    if (output === 'json') ctx.out(json(result, operand, format))
    else if (!quiet) ctx.out(human(result))
    return exitCode(result)
  } finally {
    await storage.close()
  }
}
