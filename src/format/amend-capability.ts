// Option amendment (qemu-img amend) as a driver capability: the command opens the image and
// hands the parsed options to the driver, which changes what its format lets change.
import type { Storage } from '../io/storage.js'
import type { FormatDriver } from './driver.js'
import { hasMethods } from './capabilities.js'

/** qemu-img amend's -o options, parsed (QEMU's names in camelCase). */
export interface AmendOptions {
  compat?: '0.10' | '1.1' | undefined
  lazyRefcounts?: boolean | undefined
  refcountBits?: number | undefined
  dataFile?: string | undefined
  dataFileRaw?: boolean | undefined
  size?: number | undefined
}

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
  /** Reads the -o values (names already checked) into amend options, with the format's messages. */
  parseAmendOptions(options: ReadonlyMap<string, string>): AmendOptions
  /** Applies `options`, with the format's checks and QEMU's messages. */
  amend(options: AmendOptions, host: AmendHost): Promise<void>
}

/** True when `driver` can amend its options. */
export function isAmendable(driver: FormatDriver): driver is FormatDriver & Amendable {
  return hasMethods(driver, 'amend', 'parseAmendOptions')
}
