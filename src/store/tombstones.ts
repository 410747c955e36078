// The original DES's deletions: its deletion API marks a file deleted in a
// JSON sidecar beside the shard (the shard's key with `.des` replaced by
// `.meta`), under `tombstones`, keyed `<uid>:<created_at in UTC, ISO with Z>`.
// Its retriever answers 410 for such a file; so must we, or a store switched
// over from it would serve files deleted there again. A sidecar is read when
// its shard is opened or re-checked, never per request; a shard without one
// costs a request nothing.

import type { Readable } from 'node:stream'
import { DesError, errorCode } from '../errors'
import type { ByteSource } from '../storage/source'
import { referenceUtcIso } from './timestamp'

/**
 * A shard's deletions: the tombstone keys of its sidecar, or why its sidecar
 * could not be read (then no file of the shard is served: it might be deleted).
 */
export type Tombstones = ReadonlySet<string> | DesError

/** A shard's sidecar as read: its version, and its deletions (undefined: none). */
export interface Sidecar {
  etag: string
  tombstones: Tombstones | undefined
}

/** A sidecar larger than this is refused (the original's holds the shard's whole index, as JSON). */
const MAX_SIDECAR_BYTES = 256 << 20

/** The key of a shard's sidecar, as the original names it (its metadata manager's _meta_key). */
export function sidecarKey(shardKey: string): string {
  return shardKey.endsWith('.des') ? shardKey.slice(0, -4) + '.meta' : shardKey + '.meta'
}

/** The reference's tombstone key of a file (ShardMetadata.build_key). */
export function tombstoneKey(uid: string, createdAt: string): string {
  return `${uid}:${referenceUtcIso(createdAt) ?? createdAt}`
}

/** The deletions a sidecar's text holds: its `tombstones` mapping's keys (an empty one is none). */
export function parseTombstones(text: string, shardKey: string): Tombstones | undefined {
  const damaged = (why: string) => new DesError('DES_CORRUPT', `shard ${shardKey}: its .meta sidecar (the original's deletions) ${why}; its files are not served, as any of them may be deleted`)
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    // The parser's message quotes the sidecar's bytes: not repeated.
    return damaged('is not valid JSON')
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return damaged('is not a JSON object')
  const tombstones = (doc as { tombstones?: unknown }).tombstones
  if (tombstones === undefined) return damaged('has no "tombstones"')
  if (tombstones === null || typeof tombstones !== 'object' || Array.isArray(tombstones)) return damaged('has "tombstones" that is not a mapping')
  const keys = Object.keys(tombstones)
  for (const k of keys) {
    const record = (tombstones as Record<string, unknown>)[k]
    if (record === null || typeof record !== 'object' || Array.isArray(record)) return damaged('has a tombstone that is not an object')
  }
  return keys.length === 0 ? undefined : new Set(keys)
}

async function bytesOf(body: Readable, shardKey: string): Promise<Buffer | DesError> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_SIDECAR_BYTES) {
      body.destroy()
      return new DesError('DES_CORRUPT', `shard ${shardKey}: its .meta sidecar is over ${MAX_SIDECAR_BYTES} bytes; its files are not served, as any of them may be deleted`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/**
 * The sidecar of the shard at `shardKey` (undefined when there is none);
 * `previous`, when its version is unchanged, is returned as it is. Fails
 * only when the storage does (then the shard is not served either).
 */
export async function readSidecar(source: ByteSource, shardKey: string, previous?: Sidecar): Promise<Sidecar | undefined> {
  const key = sidecarKey(shardKey)
  try {
    const { body, etag, objectSize } = await source.stream(key, undefined, { type: 'meta' })
    // A sidecar unchanged since (same ETag, or a local file's identity and times) is not read again.
    const version = etag ?? `size:${objectSize}`
    if (previous !== undefined && etag !== undefined && previous.etag === version) {
      body.destroy()
      return previous
    }
    const bytes = await bytesOf(body, shardKey)
    return { etag: version, tombstones: bytes instanceof DesError ? bytes : parseTombstones(bytes.toString('utf8'), shardKey) }
  } catch (err) {
    if (errorCode(err) === 'DES_NOT_FOUND' || errorCode(err) === 'DES_NO_FILE') return undefined
    throw err
  }
}

/**
 * Refuses a file its shard's sidecar marks deleted (410, the original's
 * "File deleted"), and every file of a shard whose sidecar is damaged.
 * Only called for a shard with a sidecar.
 */
export function checkNotDeleted(tombstones: Tombstones, uid: string, createdAt: string | undefined): void {
  if (tombstones instanceof DesError) throw tombstones
  // A find without its created_at (none here) cannot tell: refused rather than served.
  if (createdAt === undefined || tombstones.has(tombstoneKey(uid, createdAt))) {
    throw Object.assign(new DesError('DES_DELETED', `uid ${JSON.stringify(uid)} is deleted (a tombstone of the original DES)`, { uid }), { detail: 'File deleted' })
  }
}
