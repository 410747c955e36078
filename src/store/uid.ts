// What a uid (or any text handed to the addon) must be to be stored as
// itself: the rules every entry point (pack, migrate, serve) checks by.

/** The longest uid a shard's index can hold, in UTF-8 bytes (FORMAT.md). */
export const MAX_UID_BYTES = 65535

/** The uid's UTF-8 length when it is over MAX_UID_BYTES, else undefined (cheap for short uids). */
export function uidBytesOverLimit(uid: string): number | undefined {
  if (uid.length <= MAX_UID_BYTES / 3) return undefined
  const bytes = Buffer.byteLength(uid)
  return bytes > MAX_UID_BYTES ? bytes : undefined
}

/** Half of a UTF-16 surrogate pair without its other half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * True when the text holds a lone UTF-16 surrogate: it reaches Rust with
 * U+FFFD in its place, so two different texts would be one there.
 */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text)
}
