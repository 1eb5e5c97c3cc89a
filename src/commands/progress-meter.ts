// Progress as numbers, for programs (--progress=json) and for qemu-img's bar alike: a command
// names each phase of its work with the bytes it will take, then adds bytes as they are done.

/** Phase `index` of `count`. */
export interface PhasePlace { index: number; count: number }

/** Receives a command's progress. */
export interface ProgressMeter {
  /**
   * A phase begins ("scan", "write", "copy", "check"…) with `total` bytes of work; `place` says
   * which of the command's phases it is (default: the only one), for an overall percentage.
   */
  phase(name: string, total: number, place?: PhasePlace): void
  /** `bytes` more of the current phase are done. */
  add(bytes: number): void
  /** The command's work is over (a last report). */
  end(): void
}

/** A meter that records nothing. */
export const NO_PROGRESS: ProgressMeter = { phase() {}, add() {}, end() {} }

/** Reports to several meters at once. */
export function bothMeters(a: ProgressMeter | undefined, b: ProgressMeter | undefined): ProgressMeter {
  if (!a) return b ?? NO_PROGRESS
  if (!b) return a
  return {
    phase: (name, total, place) => { a.phase(name, total, place); b.phase(name, total, place) },
    add: (bytes) => { a.add(bytes); b.add(bytes) },
    end: () => { a.end(); b.end() },
  }
}
