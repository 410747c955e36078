// The object key of a store's file on S3: the store's prefix as configured
// ('' or ending in '/', a leading '/' kept, as the original keeps it), then
// the file's key in the store. Every key and list prefix DES sends is made
// here: on AWS `/archive/x` and `archive/x` are two objects, so a store the
// original wrote under `/archive/` is found only at its own keys.

import * as path from 'node:path'

/** `<prefix><key>`: the prefix verbatim, the key relative to the store. */
export function s3ObjectKey(prefix: string, key: string): string {
  return prefix + key
}

/**
 * The object a key reaches on a server that cleans request paths (MinIO
 * serves, writes and deletes `archive/x` for the key `/archive/x`): leading
 * slashes, `//`, `.` and `..` taken as such a server takes them.
 */
export function keyReached(key: string): string {
  if (key === '') return ''
  return path.posix.normalize(key).replace(/^(\.\.?\/|\/)+/, '')
}
