// Loading qimg's optional native addons (built by scripts/build-native.mjs with node-gyp): each is
// looked for beside the compiled code and beside the sources, and any failure (not built, built
// for another Node or platform, QIMG_NO_NATIVE set) means "not available", never an error.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/**
 * The addon `native/<dir>build/Release/<name>.node` when it loads and `usable` accepts it, else
 * null. `dir` is '' or a subfolder with a trailing slash.
 */
export function loadAddon<T>(dir: string, name: string, usable: (mod: Partial<T>) => boolean): T | null {
  if (typeof process === 'undefined' || process.env['QIMG_NO_NATIVE']) return null
  let require: NodeJS.Require
  try {
    require = createRequire(import.meta.url)
  } catch {
    return null
  }
  // This module is dist/src/node/addon.js when compiled, src/node/addon.ts under tsx.
  for (const up of ['../../../', '../../']) {
    try {
      const mod = require(fileURLToPath(new URL(`${up}native/${dir}build/Release/${name}.node`, import.meta.url))) as Partial<T>
      if (usable(mod)) return mod as T
    } catch {
      // not built here, or built for another Node/platform: try the next, then fall back
    }
  }
  return null
}
