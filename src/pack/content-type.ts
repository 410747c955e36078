// The content type a packed entry is served with, recorded at pack time in its
// meta as `content_type` (what `des serve` reads): the one the manifest's meta
// gives (`content_type`, or `mime` as the original wrote it), else the one its
// extension says (`mime-types`, the table Express uses), taken from the source's
// name, else from the uid's. No charset is added: the bytes' encoding is not known.

import * as path from 'node:path'
import { lookup } from 'mime-types'

/** Types by lower-case extension, as looked up so far (a run of thousands of files has a few extensions). */
const typeByExtension = new Map<string, string | undefined>()

/** The type the extension of `name` (a path, an `s3://` URI or a uid) says, or undefined. */
export function typeFromName(name: string): string | undefined {
  const ext = path.posix.extname(path.posix.basename(name.replace(/[?#].*$/, ''))).toLowerCase()
  if (!ext) return undefined
  if (!typeByExtension.has(ext)) {
    const type = lookup(ext)
    typeByExtension.set(ext, type === false ? undefined : type)
  }
  return typeByExtension.get(ext)
}

/**
 * `meta` with `content_type` set from the source's or the uid's extension
 * when meta gives no type; unchanged when it gives one or no extension is known.
 */
export function withContentType(meta: Record<string, unknown> | undefined, source: string, uid: string): Record<string, unknown> | undefined {
  if (meta && (typeof meta.content_type === 'string' || typeof meta.mime === 'string')) return meta
  const type = typeFromName(source) ?? typeFromName(uid)
  return type === undefined ? meta : { ...meta, content_type: type }
}
