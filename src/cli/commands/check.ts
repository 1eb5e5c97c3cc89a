// qimg check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-U] IMG — exit 0 clean,
// 1 check errors, 2 corruptions, 3 leaks only, 63 format has no check (as qemu-img).
import { ImageError, isImageError } from '../../errors.js'
import { loadLayout, type Qcow2Layout } from '../../qcow2/open.js'
import { clearStaleAutoclear } from '../../qcow2/header-encode.js'
import { openFailure } from '../block-options.js'
import { probeFormat } from '../../format/probe.js'
import { findFormatModule } from '../../formats.js'
import { referencedOpener } from '../../format/chain.js'
import { nodeFileHost } from '../../node/open.js'
import { FileStorage } from '../../io/file.js'
import { checkQcow2, type CheckResult } from '../../qcow2/check.js'
import { flag, stringOption } from '../getopt.js'
import { toQemuJson } from '../qjson.js'
import { oneOperand, openOperand, operandImage, outputFormat, parseArgs, reportError, type Command } from '../context.js'

/** printf's %0.2f: toFixed(2) breaks an exact tie upwards, printf to the even digit (3.125 → 3.12). */
function fixed2(x: number): string {
  const scaled = x * 100
  // Only multiples of 1/8 can be exact ties at two decimals.
  if (Number.isInteger(x * 8) && scaled - Math.floor(scaled) === 0.5) {
    const down = Math.floor(scaled)
    return ((down % 2 === 0 ? down : down + 1) / 100).toFixed(2)
  }
  return x.toFixed(2)
}

function human(r: CheckResult): string {
  let out = ''
  if (!(r.corruptions || r.leaks || r.checkErrors)) out += 'No errors were found on the image.\n'
  else {
    if (r.corruptions) out += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`
    if (r.leaks) out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`
    if (r.checkErrors) out += `\n${r.checkErrors} internal errors have occurred during the check.\n`
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, d: number) => fixed2((n * 100) / d)
    out += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters\n`
  }
  if (r.imageEndOffset) out += `Image end offset: ${r.imageEndOffset}\n`
  return out
}

function json(r: CheckResult, filename: string, format = 'qcow2'): string {
  const opt = (n: number) => (n !== 0 ? n : undefined)
  return toQemuJson({
    filename, format, 'check-errors': r.checkErrors,
    'image-end-offset': opt(r.imageEndOffset), corruptions: opt(r.corruptions), leaks: opt(r.leaks),
    'corruptions-fixed': opt(r.corruptionsFixed), 'leaks-fixed': opt(r.leaksFixed),
    'total-clusters': opt(r.totalClusters), 'allocated-clusters': opt(r.allocatedClusters),
    'fragmented-clusters': opt(r.fragmentedClusters), 'compressed-clusters': opt(r.compressedClusters),
  }) + '\n'
}

/** Whether a qcow2 header's crypt_method (bytes 32-35) is set. */
async function encrypted(storage: FileStorage): Promise<boolean> {
  const bytes = await storage.read(32, 4)
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0) !== 0
}

// Open-time rules qcow2_do_open skips under BDRV_O_CHECK: check reports (or repairs) these.
const CHECK_TOLERATES = new Set(['Image does not contain a reference count table', 'Snapshot table too large', 'Snapshot table offset invalid'])

/**
 * qemu-img check opens the image first (BDRV_O_CHECK): a header qcow2_do_open refuses fails as
 * "Could not open 'NAME': …", and a writable open (-r) clears the autoclear bits qimg does not
 * keep up to date. Other damage is left for the check to report.
 */
async function openForCheck(storage: FileStorage, operand: string, writable: boolean): Promise<void> {
  let layout: Qcow2Layout
  try {
    layout = await loadLayout(storage)
  } catch (e) {
    if (isImageError(e) && e.qemuText !== undefined && !CHECK_TOLERATES.has(e.qemuText)) throw openFailure(operand, e)
    return
  }
  if (writable) await clearStaleAutoclear(storage, layout.header)
}

/** The exit code qemu-img check gives a result. */
function exitCode(r: CheckResult): number {
  if (r.checkErrors) return 1
  if (r.corruptions) return 2
  if (r.leaks) return 3
  return 0
}

/**
 * check for a format other than qcow2, through its module: QEMU's message and 63 when it has no
 * check, or its check cannot do what was asked (vdi with -r: -ENOTSUP).
 */
async function checkWithModule(storage: FileStorage, format: string, operand: string, repair: string | undefined, output: string, quiet: boolean, ctx: Parameters<Command>[1], untrusted: boolean): Promise<number> {
  // Files the image is made of (VMDK extents) open as the chain opener opens them.
  const openReferenced = untrusted ? undefined : referencedOpener(storage.name, nodeFileHost)
  const module = findFormatModule(format)
  if (!module?.check) {
    reportError(ctx, 'This image format does not support checks')
    return 63
  }
  let result: CheckResult
  try {
    result = await module.check(storage, { fix: repair as 'leaks' | 'all' | undefined, report: (line) => ctx.err(line + '\n'), openReferenced })
  } catch (e) {
    if (isImageError(e, 'UNSUPPORTED') && e.qemuText === 'This image format does not support checks') {
      reportError(ctx, e.qemuText)
      return 63
    }
    throw e // vdi_open's refusals: the module's qemuText reads "Could not open 'NAME': …" already
  }
  if (result.failed) {
    reportError(ctx, `Check failed: ${result.failed}`)
    return 1
  }
  if (output === 'json') ctx.out(json(result, operand, format))
  else if (!quiet) ctx.out(human(result))
  return exitCode(result)
}

export const check: Command = async (args, ctx) => {
  const parsed = parseArgs(args, [
    { long: 'output', value: true },
    { short: 'r', long: 'repair', value: true, key: 'repair' },
    { short: 'T', long: 'cache', value: true, key: 'cache' },
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
    if (format !== 'qcow2') return await checkWithModule(storage, format, operand, repair, output, quiet, ctx, parsed.options.has('untrusted'))
    // qemu-img check opens the image first: an encrypted one needs its secret (given, or asked
    // for on a terminal), as for every other command. The refcounts are checked without it.
    if (await encrypted(storage)) await (await openOperand(operand, parsed, { fileReferences: 'ignore' })).close()
    await openForCheck(storage, operand, repair !== undefined)
    const report = (line: string) => ctx.err(line + '\n')
    let result = await checkQcow2(storage, { fix: repair as 'leaks' | 'all' | undefined, report })
    if (result.failed) {
      reportError(ctx, `Check failed: ${result.failed}`)
      return 1
    }
    if (result.corruptionsFixed || result.leaksFixed) {
      const fixed = { leaksFixed: result.leaksFixed, corruptionsFixed: result.corruptionsFixed }
      if (output === 'human' && !quiet) {
        ctx.out(`The following inconsistencies were found and repaired:\n\n    ${fixed.leaksFixed} leaked clusters\n    ${fixed.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`)
      }
      result = { ...(await checkQcow2(storage, { report })), ...fixed }
    }
    // qemu-img names the operand as given (the option string with --image-opts).
    if (output === 'json') ctx.out(json(result, operand))
    else if (!quiet) ctx.out(human(result))
    if (result.checkErrors) return 1
    if (result.corruptions) return 2
    if (result.leaks) return 3
    return 0
  } finally {
    await storage.close()
  }
}
