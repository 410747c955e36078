// The packer's types: its inputs, targets, options and results, and the
// seams the CLI and tests use. A leaf: it imports no module of src/pack.

import type { S3Client } from '@aws-sdk/client-s3'
import type { Layout } from '../config/env'
import type { ShardReader } from '../native'

/** Which keys of the manifest this process packs: those with shard index mod `count` = `index`. */
export interface WorkerSlice {
  index: number
  count: number
}

/** Test seams: run something just before a part's upload completes. */
export interface S3Hooks {
  beforeComplete?(key: string, attempt: number): Promise<void>
}

/** One zone of a zoned pack target: its inclusive shard-index range and where its shards go. */
export interface PackZone {
  name: string
  start: number
  end: number
  bucket: string
  /** Key prefix ('' or ending in '/'). */
  prefix: string
  client: S3Client
}

/**
 * How s3:// sources are read: with this client, whose retry strategy is the
 * one retry policy (`createS3Client`'s maxAttempts and retryDelayMs); a read
 * is not retried on top of it.
 */
export interface S3SourceOptions {
  client: S3Client
}

export interface PackInput {
  uid: string
  createdAt: string
  sizeBytes?: number
  /** A local path or s3://bucket/key. */
  source: string
  meta?: Record<string, unknown>
  /**
   * An s3:// source's ETag when the caller checked it (des migrate's step 2):
   * it is read If-Match that ETag, so other bytes put there since are
   * refused (DES_SOURCE_CHANGED), never stored in its place.
   */
  etag?: string
  /** Where the caller already routed it (des migrate, with the same n_bits and layout): not routed again. */
  location?: { dateDir: string; shardHex: string; shardIndex: number }
}

/** `zones`: each key to the zone that serves its shard index (zonesPackTarget builds it from a zones file); `nBits` must be the run's. */
export type PackTarget =
  | { kind: 'local'; dir: string }
  | { kind: 's3'; bucket: string; prefix: string; client: S3Client }
  | { kind: 'zones'; nBits: number; zones: PackZone[] }

export interface PackOptions {
  /** Routing bits, 4..16 (default 8). */
  nBits?: number
  /**
   * `nested` (default): `<UTC date>/<HEX>.des`. `flat`: the reference packer's
   * `<date as written>_<HEX>_<NNNN>.des` with BigFiles in `_bigFiles/`; a run
   * never rewrites a flat shard that exists, it starts the next `_NNNN`.
   */
  layout?: Layout
  /** A part whose data section would pass this many bytes continues in `<HEX>.<n>.des`. */
  maxShardSize?: number
  codec?: 'zstd' | 'lz4' | 'none'
  /** zstd level (default 3). */
  level?: number
  /** Payloads larger than this become BigFiles (default 10 MiB). */
  bigFileThreshold?: number
  /** BigFile folder beside the shards (default `_bigFiles`). */
  bigfilesPrefix?: string
  /** Suffix read of an existing S3 shard's footer and index (DES_TAIL_BYTES; default 64 KiB). */
  tailBytes?: number
  /** A local store's new shards are written past the page cache (DES_WRITE_PAST_CACHE; default true). */
  writePastCache?: boolean
  /** Extensions stored raw (default .jpg .jpeg .png .gif .gz .zip .bz2 .xz). */
  skipExtensions?: string[]
  /** A uid already stored is replaced (in the part that holds it) instead of refused. */
  replace?: boolean
  /** A uid already in its shard with the same size is skipped, not an error: makes reruns idempotent. */
  skipExisting?: boolean
  /** How s3:// sources are read; a function is called only when the inputs name one. */
  sourceS3?: S3SourceOptions | (() => S3SourceOptions)
  /**
   * Pack only the keys of one of `count` workers: those whose shard index mod
   * `count` is `index` (all parts of a key go to one worker). The whole input
   * is still checked (fields, dates, duplicate uids); sources and the store
   * only for this worker's keys.
   */
  worker?: WorkerSlice
  /** Check everything a run checks before it writes (inputs, sources, uids already stored), then stop: nothing is written. */
  dryRun?: boolean
  onProgress?: (p: { files: number; bytes: number; totalFiles: number; totalBytes: number }) => void
}

export interface PackedShard {
  /** Local: the key under the output dir (`20240101/0A.des`); S3: the object key (prefix included). */
  key: string
  /** Files this run added to it. */
  files: number
  /** Their uids (empty when the inputs came as a stream). */
  uids: string[]
  bytesIn: number
  /** Bytes this run wrote for them: shard bytes plus the BigFiles it wrote (one already there with the same bytes is not written again, nor counted). */
  bytesStored: number
}

export interface PackResult {
  shards: PackedShard[]
  files: number
  skipped: number
  bytesIn: number
  bytesStored: number
  seconds: number
  /** A dry run: `shards` are the keys that would be written to, `files` what would be added. */
  dryRun?: boolean
  /** Temp files left by packers that died, removed from the folders written to (when any were). */
  tempsRemoved?: number
  /** What went wrong beside the packing, which is complete (removing such temp files). */
  warnings?: string[]
}

/** Extras for the CLI and tests: how inputs are named in errors, S3 test seams. */
export interface PackExtras {
  /** What a failure's message tells to do to finish (default: rerun with --skip-existing). */
  rerunHint?: string
  /** How error messages name input `i` (default `input <i+1>`). */
  label?: (i: number) => string
  s3Hooks?: S3Hooks
  /** Folder for S3 temp files and a spilled plan (default the OS temp dir). */
  tmpDir?: string
  /** Inputs planned in memory before the plan spills to temp files (default DEFAULT_MEMORY_ENTRIES). */
  memoryEntries?: number
  /** Bytes of manifest text planned in memory before the plan spills (default DEFAULT_MEMORY_BYTES). */
  memoryBytes?: number
  /** About how many entries a stream holds (sizes the spill files; see manifestEntriesHint). */
  expectedEntries?: number
  /**
   * The caller checked every source and gave its size as `sizeBytes` (des
   * migrate's step 2): the packer does not stat or HEAD them again.
   */
  sourcesChecked?: boolean
  /**
   * The indexes of a key's existing parts as the caller just read them (des
   * migrate's pre-check, keys locked): the packer's first look at a key takes
   * these instead of reading them again. Undefined for a key = read it.
   */
  existingParts?: (key: { dateDir: string; shardHex: string }) => ShardReader[] | undefined
  /**
   * A part as the caller last read it: its index, version and size, null when
   * it saw no such part, undefined when it did not look. An S3 write builds on
   * it instead of reading the part again (a conditional write refuses it if
   * the part changed since, and the retry reads it fresh).
   */
  knownPart?: (key: { dateDir: string; shardHex: string }, part: number) => KnownPart | null | undefined
  /** The caller reads every written part back itself (des migrate's step 4): the packer does not read it again. */
  readBackByCaller?: boolean
}

/** A part as someone just read it. */
export interface KnownPart {
  reader: ShardReader
  etag: string
  size: number
}
