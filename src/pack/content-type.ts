// The content type a packed entry is served with, recorded at pack time in its
// meta as `content_type` (what `des serve` reads): the one the manifest's meta
// gives (`content_type`, or `mime` as the original wrote it), else the one its
// extension says (`mime-types`, the table Express uses), taken from the source's
// name, else from the uid's. No charset is added: the bytes' encoding is not known.

/** mime-types, loaded at the first lookup: building its table is ~8 ms at the start of every command, and a run whose files have no extension never needs it. */
let lookup: ((ext: string) => string | false) | undefined

/** Types by lower-case extension, as looked up so far (a run of thousands of files has a few extensions). */
const typeByExtension = new Map<string, string | undefined>()

/**
 * The extension of the last segment of `name` (`path.posix.extname` of its
 * basename), after cutting a `?query` or `#fragment`; '' when there is none.
 * Written out: it runs for every file of a run.
 */
function extensionOf(name: string): string {
  let end = name.length
  const q = name.indexOf('?')
  if (q >= 0) end = q
  const h = name.indexOf('#')
  if (h >= 0 && h < end) end = h
  while (end > 1 && name.charCodeAt(end - 1) === 0x2f) end--
  const start = name.lastIndexOf('/', end - 1) + 1
  const dot = name.lastIndexOf('.', end - 1)
  return dot > start ? name.slice(dot, end) : ''
}

/** The type the extension of `name` (a path, an `s3://` URI or a uid) says, or undefined. */
export function typeFromName(name: string): string | undefined {
  const ext = extensionOf(name).toLowerCase()
  if (!ext) return undefined
  if (!typeByExtension.has(ext)) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    lookup ??= (require('mime-types') as typeof import('mime-types')).lookup
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

/** The meta text of an input with no meta, by type: a run of thousands of files has a few. */
const textByType = new Map<string, string>()

/** `withContentType` as the JSON text stored with the entry; undefined when there is no meta. */
export function metaText(meta: Record<string, unknown> | undefined, source: string, uid: string): string | undefined {
  if (meta === undefined) {
    const type = typeFromName(source) ?? typeFromName(uid)
    if (type === undefined) return undefined
    let text = textByType.get(type)
    if (text === undefined) textByType.set(type, (text = JSON.stringify({ content_type: type })))
    return text
  }
  const full = withContentType(meta, source, uid)!
  return Object.keys(full).length > 0 ? JSON.stringify(full) : undefined
}
