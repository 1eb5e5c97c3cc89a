// A storage lent to code that closes what it is given (an image driver closes its file): the
// lender keeps ownership, so close() is a no-op on the loan and everything else passes through.
import type { ReadableStorage } from './storage.js'

/** `storage` with a close() that leaves it open. */
export function borrowed<T extends ReadableStorage>(storage: T): T {
  return new Proxy(storage, {
    get(target, key) {
      if (key === 'close') return async () => undefined
      const value: unknown = Reflect.get(target, key, target)
      // Bound to the real object: class methods reach their private fields through `this`.
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
