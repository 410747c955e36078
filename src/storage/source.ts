// One small interface every storage backend implements (the PMTiles model):
// a shard is read as its tail (footer + index in one request), then byte
// ranges; BigFiles are streamed. Nothing above this asks which backend it is.

import type { Readable } from 'node:stream'
import { DesError } from '../errors'

/**
 * What a metric's `type` label says a GET was for (SPEC §8); `meta`, the
 * original's deletion sidecar beside a shard, is not counted (nor is it by the original).
 */
export type ReadType = 'tail' | 'index' | 'payload' | 'bigfile' | 'meta'

/** The last bytes of an object and what identifies this version of it. */
export interface ObjectTail {
  bytes: Buffer
  objectSize: number
  /** Changes whenever the object does (S3 ETag; size + mtime + inode locally). */
  etag: string
}

/** An object's bytes as a stream (BigFiles), with the object's full size. */
export interface ObjectStream {
  body: Readable
  /** Size of the whole object (not of the range). */
  objectSize: number
  /** The version of the object being read (an S3 ETag, a local file's identity and times). */
  etag?: string
}

/** One object of a listing. */
export interface ListedObject {
  /** Key relative to the source (no bucket prefix, no base dir), `/`-separated. */
  key: string
  size: number
  /** Last modification, ms since the epoch. */
  modifiedMs: number
  /**
   * Local only: a link whose target cannot be reached (why, e.g. ENOENT), a
   * file or a folder of files no reader can read (a disk behind it unmounted).
   */
  broken?: string
}

/** How a stream is read: the metric label, and the version it must still be. */
export interface StreamOptions {
  /** What the GET is for (default `bigfile`). */
  type?: ReadType
  /** Fail with EtagMismatchError when the object is no longer this version. */
  etag?: string
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number
  /** Last byte, inclusive. */
  end: number
}

export interface ByteSource {
  /** The backend it is part of, `local`, `s3` or `multi_s3` (the metrics label it with backendLabel). */
  readonly backend: string
  /** Identifies the source in cache keys (bucket + prefix, or base dir). */
  readonly id: string
  /** The last `n` bytes of `key` (all of it when smaller). DES_NOT_FOUND when there is no such object. */
  getTail(key: string, n: number): Promise<ObjectTail>
  /**
   * `length` bytes of `key` from `offset`. With `etag`, fails with
   * EtagMismatchError when the object is no longer that version.
   */
  getRange(key: string, offset: number, length: number, type: ReadType, etag?: string): Promise<Buffer>
  /** The object (or one range of it) as a stream. DES_NOT_FOUND when absent. */
  stream(key: string, range?: ByteRange, opts?: StreamOptions): Promise<ObjectStream>
  /**
   * Every object of the source for a store-wide scan (`des verify --store`),
   * never used on the read path. Sorted, so the keys under one folder, and
   * the keys sharing any prefix, come together.
   */
  list(): AsyncIterable<ListedObject>
  /**
   * Keys of objects at the source's root (not in a folder), at most `limit`
   * of them, in no set order: a look at what a store holds that reads about
   * `limit` names however many it holds (a flat store keeps every shard at
   * its root). Throws as `list` does.
   */
  rootKeys(limit: number): Promise<string[]>
  /** The backend is reachable (for /ready; never on the hot path). */
  ping(): Promise<void>
  /** A path on this machine when the object is a local file (lets the native reader read it directly). */
  localPath?(key: string): string
  /** Version of a local object without reading it (size + mtime + inode); DES_NOT_FOUND when absent. */
  localEtag?(key: string): Promise<string>
}

/** The object changed since its index was read: drop the cached index and retry once. */
export class EtagMismatchError extends DesError {
  constructor(key: string) {
    super('DES_CONFLICT', `${key} changed while it was being read`)
    this.name = 'EtagMismatchError'
  }
}

/** The source that holds the shards of one shard index (multi-S3 splits them into zones). */
export interface ShardSources {
  /** Backend of the whole store, `local`, `s3` or `multi_s3` (`/ready` says it; metrics label it with backendLabel). */
  readonly backend: string
  sourceFor(shardIndex: number): ByteSource
  /** Every distinct source (for /ready). */
  all(): ByteSource[]
}

/** All shard indexes on one source. */
export function singleSource(source: ByteSource): ShardSources {
  return { backend: source.backend, sourceFor: () => source, all: () => [source] }
}
