// Node builtins that cost start-up time (node:crypto loads ~20 internal modules, node:zlib a
// dozen) are loaded at their first use, not when a module that might use them is imported, so
// `qimg info` of a plain image never pays for them (issue 16).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/** A getter for the builtin `name`, loading it on its first call. */
export function lazyBuiltin<T>(name: string): () => T {
  let loaded: T | undefined
  return () => (loaded ??= require(name) as T)
}
