// A format module: everything the generic layers (chain opener, probe, create, convert) need to
// know of one image format. Each format's folder exports one; nothing outside it names the format.
import type { Codecs, Compressors } from '../codecs.js'
import type { CryptoProvider } from '../crypto/provider.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import type { FormatDriver } from './driver.js'
import type { CheckReport } from './capabilities.js'
import type { ProgressMeter } from '../commands/progress-meter.js'
import type { FormatMeasureRequest, MeasureResult } from './measure.js'
import type { InfoMembers } from './info.js'

/** What an opening format driver may ask of the chain opener. */
export interface FormatOpenContext {
  /** Open for writing (only ever the top layer). */
  writable: boolean
  /** This layer is the top of the chain (the one the user named). */
  top: boolean
  codecs: Codecs | undefined
  compressors: Compressors | undefined
  crypto: CryptoProvider | undefined
  /** The image's secret (a passphrase or key), asked for only when the image is encrypted. */
  secret: (() => Promise<Uint8Array | undefined>) | undefined
  /** Describe only (info): an encrypted image opens without its secret. */
  metadataOnly: boolean
  /** Read the image at this internal snapshot. */
  snapshot: string | { id?: string; name?: string } | undefined
  l2CacheSize: number | undefined
  /** Lines an open prints on its own (QEMU's fprintf(stderr)). */
  report: ((line: string) => void) | undefined
  /** The file-reference policy says files the image names are not to be opened at all (info). */
  skipReferencedFiles: boolean
  /**
   * Opens a file the image names other than its backing file (an external data file, a VMDK
   * extent), resolved against the image's own name and checked under the file-reference
   * policy; `what` names it in messages ('external data file'). Undefined when no host can open
   * files.
   */
  openReferenced: ((name: string, what: string, options?: { writable?: boolean }) => Promise<ReadableStorage>) | undefined
  /** The caller's own data file for the top image (the user's data-file option). */
  dataFile: ReadableStorage | undefined
}

/** What `check` hands a module. */
export interface FormatCheckOptions {
  fix?: 'leaks' | 'all' | undefined
  /** Prints a line as QEMU's check does on stderr (ERROR/Leaked …/Repairing …). */
  report: (line: string) => void
  /** Opens a file the image names (a VMDK extent), as {@link FormatOpenContext.openReferenced}. */
  openReferenced?: FormatOpenContext['openReferenced']
  /**
   * Opens (and closes) the image as every other command opens it, asking for its secret: for a
   * check that must open an encrypted image first, as qemu-img check does.
   */
  openImage?: (() => Promise<void>) | undefined
  /** Receives the check's progress, where the format reports it (qcow2: references, refcounts, copied). */
  progress?: ProgressMeter | undefined
}

/** One creation option as qemu-img lists it in `-o help` and the "Formatting" line. */
export interface CreateOptionDesc {
  name: string
  type: 'size' | 'number' | 'bool' | 'string'
  help: string
  /** The default qemu-img prints in the "Formatting …" line. */
  default?: string
}

/** What `create` (and `convert`'s target creation) hands a module. */
export interface FormatCreateRequest {
  /** The new, empty image file. */
  storage: Storage
  /** Virtual size in bytes as the user gave it (the module rounds as QEMU does). */
  size: number
  /** The -o options, validated against {@link FormatModule.createOptions}. */
  options: ReadonlyMap<string, string>
  /** The secret named by an encryption option, when one was given. */
  secret: Uint8Array | undefined
  crypto: CryptoProvider | undefined
  compressors: Compressors | undefined
  /**
   * Creates a further file of the image (a VMDK extent) at `path`, a name the module composed
   * from the image's own name, as QEMU composes it; absent when the host cannot.
   */
  createFile?: ((path: string) => Promise<Storage>) | undefined
  /** Deletes a further file made by {@link createFile} when the create fails (QEMU's bdrv_co_delete_file). */
  removeFile?: ((path: string) => Promise<void>) | undefined
  /** Opens, read-only, a file the new image names (its backing file), resolved against the image's name. */
  openFile?: ((name: string) => Promise<ReadableStorage>) | undefined
}

/** One image format. */
export interface FormatModule {
  /** The name qemu-img uses (-f, -O, info's "file format"). */
  readonly name: string
  /**
   * QEMU's bdrv_probe: a score for how sure the module is that `head` (the file's first bytes,
   * at most 2048) starts an image of this format; 0 for no. The highest score wins; raw is the
   * fallback with score 1.
   */
  probe?(head: Uint8Array, fileSize: number, filename: string): number
  /** Opens one layer over `storage`. */
  open(storage: ReadableStorage, context: FormatOpenContext): Promise<FormatDriver>
  /** The -o options create takes, in the order qemu-img prints them (size included). */
  readonly createOptions?: readonly CreateOptionDesc[]
  /** Its drivers take whole-cluster compressed writes (convert -c, qemu-io write -c). */
  readonly compressedWrites?: boolean
  /**
   * qemu-img check for this format, on the image file itself (read-only unless `fix`), with
   * QEMU's verdicts; `report` prints the lines QEMU prints while checking (ERROR/Leaked …/Repairing …).
   * Absent when the format has no check (qemu-img: "This image format does not support checks").
   */
  check?(storage: ReadableStorage, options: FormatCheckOptions): Promise<CheckReport>
  /**
   * False when a new image does not read as zeros (QEMU's bdrv_has_zero_init is 0, as for
   * luks), or a function of the -o options it was created with (qcow2: encrypted and
   * preallocated): convert then writes the zeros. Default true.
   */
  readonly zeroInit?: boolean | ((options: ReadonlyMap<string, string>) => boolean)
  /** A failed create deletes the file it made (QEMU's bdrv_co_delete_file, as block/crypto.c does). */
  readonly removeOnCreateFailure?: boolean
  /**
   * Checks the -o options as the format's create does before it makes any file (QEMU's messages);
   * optional: create checks them again.
   */
  checkCreateOptions?(options: ReadonlyMap<string, string>): void
  /** Writes a new image into `request.storage`; absent when qimg cannot create the format. */
  create?(request: FormatCreateRequest): Promise<void>
  /**
   * qemu-img measure with this format as the target (QEMU's bdrv_measure), with the format's
   * checks of the options; absent when QEMU cannot measure it.
   */
  measure?(request: FormatMeasureRequest): Promise<MeasureResult>
  /**
   * The QAPI members of this format's `format-specific` data (info's JSON and human output),
   * from the `data` its drivers give; absent when that data is already in QAPI form.
   */
  formatSpecificToJson?(data: unknown): InfoMembers
}
