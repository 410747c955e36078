// S3 addresses and S3's answers, parsed once: `s3://bucket/key` and the
// range and object size in a Content-Range header.

/** A bucket and a key, both non-empty. */
export interface S3Url {
  bucket: string
  key: string
}

/** The text names an S3 object (`s3://`, any case), well formed or not. */
export function isS3Url(text: string): boolean {
  return /^s3:\/\//i.test(text)
}

/** `s3://bucket/key` split; null when the text is not one (no bucket, no key, or not s3://). */
export function parseS3Url(text: string): S3Url | null {
  if (!isS3Url(text)) return null
  const rest = text.slice(5)
  const slash = rest.indexOf('/')
  if (slash <= 0 || slash === rest.length - 1) return null
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) }
}

/** `bytes a-b/total` → total; undefined when absent or `*`. */
export function totalFromContentRange(contentRange: string | undefined): number | undefined {
  const m = contentRange ? /\/(\d+)\s*$/.exec(contentRange) : null
  return m ? Number(m[1]) : undefined
}

/** `bytes a-b/total` → its first and last byte; undefined when absent or not a range. */
export function rangeFromContentRange(contentRange: string | undefined): { start: number; end: number } | undefined {
  const m = contentRange ? /^\s*bytes\s+(\d+)-(\d+)\//.exec(contentRange) : null
  return m ? { start: Number(m[1]), end: Number(m[2]) } : undefined
}
