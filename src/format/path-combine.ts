// Names an image gives other files (backing, data, extent files) are relative to the image's own.

/** QEMU's path_combine: a relative name is taken relative to the directory of `base`. */
export function pathCombine(base: string, name: string): string {
  if (name.startsWith('/') || /^[A-Za-z]:[\\/]/.test(name)) return name
  const slash = Math.max(base.lastIndexOf('/'), base.lastIndexOf('\\'))
  return slash < 0 ? name : base.slice(0, slash + 1) + name
}
