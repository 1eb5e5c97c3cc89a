// The public API of qimg on Node: the core (core.ts), with files, worker-thread codecs, native
// helpers and the NBD server on top. openImage also takes a path here.
export * from './core.js'
export { FileStorage } from './io/file.js'
export { openImage, describeLayer, type OpenImageOptions } from './node/open.js'
export { createQcow2, createRaw } from './node/typed-create.js'
export { nodeCodecs } from './node/codecs.js'
export { CodecPool } from './node/pool.js'
export { nodeCrypto } from './node/crypto.js'
export { NbdServer, type NbdServerOptions, type ListenAddress } from './node/nbd-server.js'
export { NbdStorage, type NbdAddress } from './node/nbd-storage.js'
