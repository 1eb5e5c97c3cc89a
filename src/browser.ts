// The public API of qimg in a browser (package.json's "browser" condition): the core, and an
// openImage that takes a Blob/File, an http(s) URL or a storage. No Node builtin is imported.
export * from './core.js'
export { openImage, type ImageSource, type PortableOpenOptions as OpenImageOptions } from './portable/open.js'
