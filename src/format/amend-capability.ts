// Option amendment (qemu-img amend) as a driver capability: the command opens the image, checks
// the -o names against the format's lists, and hands the -o values to the driver, which parses
// them itself (QEMU's bdrv_amend_options: each driver reads its own QemuOpts) and changes what its
// format lets change.
import type { Storage } from '../io/storage.js'
import type { FormatDriver } from './driver.js'
import { hasMethods } from './capabilities.js'

/** What an amending driver may ask of the command that opened it. */
export interface AmendHost {
  /** Resizes the image as `qemu-img resize --shrink` would (the generic checks, then the driver's). */
  resize(size: number): Promise<void>
  /**
   * Closes the image, runs `step` on its file (opened writable), and opens the image again:
   * for a change that no cache of an open image may outlive. Gives the new driver.
   */
  whileClosed(step: (storage: Storage) => Promise<void>): Promise<FormatDriver>
}

/** Which -o names amend takes, and which creation options it refuses as creation-only. */
export interface AmendOptionNames {
  amendable: readonly string[]
  createOnly: readonly string[]
}

/** A format whose options can change after creation. */
export interface Amendable {
  /** The option names, for the command's checks (qemu-img amend's messages). */
  readonly amendOptionNames: AmendOptionNames
  /**
   * Parses the -o values (names already checked against {@link amendOptionNames}) and applies
   * them, with the format's checks and QEMU's messages; a value refused changes nothing.
   */
  amend(options: ReadonlyMap<string, string>, host: AmendHost): Promise<void>
}

/** True when `driver` can amend its options. */
export function isAmendable(driver: FormatDriver): driver is FormatDriver & Amendable {
  return hasMethods(driver, 'amend')
}
