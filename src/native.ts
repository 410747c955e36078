// The only importer of the native addon. Errors from Rust arrive as
// "[DES_CODE] message"; they are turned back into DesError with `code` here.

import { DesError } from './errors'
import { uidOfNumber } from './number-uid'
import type * as Native from '../index'

const addon: typeof Native = loadAddon()

// The generated loader's own error ("Cannot find native binding") does not say
// which platform package was looked for; this one does.
function loadAddon(): typeof Native {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../index.js')
  } catch (err) {
    throw new Error(
      `DES native addon not available for ${platformName()}: the package des-store-${platformName()} is not installed or does not load. ` +
        'Prebuilt packages exist for linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, darwin-x64, darwin-arm64 and win32-x64-msvc ' +
        '(npm installs the matching one as an optional dependency: do not install with --omit=optional / --no-optional). ' +
        'On any other platform build from source with Rust: npm run build.',
      { cause: err },
    )
  }
}

/** The napi-rs platform suffix of this process, e.g. `linux-x64-gnu`. */
function platformName(): string {
  const base = `${process.platform}-${process.arch}`
  if (process.platform === 'win32') return `${base}-msvc`
  if (process.platform !== 'linux') return base
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
  return `${base}-${header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
}

/** `[DES_CODE] message` or `[DES_CODE uid="<JSON string>"] message`, as crates/des-node/src/error.rs writes it. */
const CODED = /^\[(DES_[A-Z_]+)(?: uid=("(?:[^"\\]|\\.)*"))?\] ([\s\S]*)$/

/** Turns an addon error into a DesError carrying its code; passes others through. */
export function decodeError(err: unknown): unknown {
  if (err instanceof Error && !(err instanceof DesError)) {
    const m = CODED.exec(err.message)
    if (m) return new DesError(m[1], m[3], { cause: err, ...(m[2] ? { uid: JSON.parse(m[2]) as string } : {}) })
  }
  return err
}

function sync<T>(f: () => T): T {
  try {
    return f()
  } catch (err) {
    throw decodeError(err)
  }
}

async function later<T>(p: () => Promise<T>): Promise<T> {
  try {
    return await p()
  } catch (err) {
    throw decodeError(err)
  }
}

export type EntryInfo = Native.EntryInfo
export type ShardLocation = Native.ShardLocation
export type ShardWriterOptions = Native.ShardWriterOptions
export type ShardWriteSummary = Native.ShardWriteSummary
export type PackFile = Native.PackFile
export type AddFilesResult = Native.AddFilesResult
export type VerifyReport = Native.VerifyReport
export type VerifyProblem = Native.VerifyProblem
/** A payload codec: `none` (stored raw), `zstd` or `lz4`. */
export type Codec = 'none' | 'zstd' | 'lz4'

/** Routes a uid to its shard. Throws DES_BAD_ARG for a bad date or n_bits. */
export function locateShard(uid: string | number, createdAt: string, nBits = 8): ShardLocation {
  // A number as the original makes it text (1.5 → "1.5", 1e16 → "1e+16"); 1.0 is 1 to JavaScript: give such uids as strings.
  const id = typeof uid === 'number' ? uidOfNumber(uid) : uid
  // A row, made into the object here: much cheaper than an addon-built object.
  const row = sync(() => addon.locateShardRow(id, createdAt, nBits))
  return { uid: id, dateDir: row[0], shardIndex: row[1], shardHex: row[2], objectKey: row[3] }
}

/** A row's route without its uid and key: what a plan needs. */
export type ShardRoute = Pick<ShardLocation, 'dateDir' | 'shardIndex' | 'shardHex'>

/** `locateShard` of many rows in one call; null for a row whose createdAt does not parse (locateShard says why). */
export function locateShards(uids: string[], createdAts: string[], nBits = 8): Array<ShardRoute | null> {
  const r = sync(() => addon.locateRows(uids, createdAts, nBits))
  const out = new Array<ShardRoute | null>(uids.length)
  for (let i = 0; i < uids.length; i++) {
    const shardIndex = r.indexes[i]
    out[i] = shardIndex === 0xffffffff ? null : { dateDir: r.dates[r.dateOf[i]], shardIndex, shardHex: r.hexes[r.hexOf[i]] }
  }
  return out
}

/** Seconds since the epoch of an ISO-8601 timestamp. Throws DES_BAD_ARG. */
export function parseTimestamp(createdAt: string): number {
  return sync(() => addon.parseTimestamp(createdAt))
}

/** Where the index of an object lies, read from its tail bytes. */
export function footerFromTail(tail: Buffer, objectSize: number): { indexOffset: number; indexSize: number } {
  return sync(() => addon.footerFromTail(tail, objectSize))
}

/** True when the first bytes of a large index, walked as a v2 index, are followed by something that is not a checksum block. */
export function indexStartIsForeign(prefix: Buffer): boolean {
  return addon.indexStartIsForeign(prefix)
}

/** The layout version (1 or 2) a shard's first 8 bytes state; DES_CORRUPT when they are no header. */
export function shardHeaderVersion(header: Buffer): number {
  return sync(() => addon.shardHeaderVersion(header))
}

export type PayloadCacheStats = Native.PayloadCacheStats

/**
 * Decoded payloads kept in Rust memory, bounded in bytes: outside the JS heap,
 * so keeping them costs the garbage collector nothing.
 */
export class PayloadCache {
  /** @internal The addon object the readers keep into. */
  readonly native: Native.PayloadCache
  /** Payloads over `maxEntryBytes` (default 1 MiB) are not kept. */
  constructor(maxBytes: number, maxEntryBytes?: number) {
    this.native = sync(() => new addon.PayloadCache(maxBytes, maxEntryBytes))
  }
  /** The bound on the bytes kept. */
  get maxBytes(): number {
    return this.native.maxBytes
  }
  /** A copy of the payload kept for (`shard`, `offset`), or null (on the calling thread). */
  get(shard: number, offset: number): Buffer | null {
    return sync(() => this.native.get(shard, offset))
  }
  /** Copies the payload kept for (`shard`, `offset`) into the start of `target` if it is there and fits; its length, or -1. */
  copyInto(shard: number, offset: number, target: Buffer): number {
    return this.native.copyInto(shard, offset, target)
  }
  /** Entries and bytes kept; hits, misses and evictions so far. */
  stats(): PayloadCacheStats {
    return this.native.stats()
  }
  /** Drops every kept payload. */
  clear(): void {
    this.native.clear()
  }
}

/**
 * Where a read keeps a copy of what it decoded: the cache, and the caller's
 * number for this opened version of the shard (the entry's offset completes
 * the key).
 */
export interface KeepIn {
  cache: PayloadCache
  shard: number
}

/**
 * Sets the process-wide payload ceiling (`DES_MAX_PAYLOAD_BYTES`): an inline
 * entry larger than this, stored or decoded, is refused as DES_CORRUPT before
 * anything is read or allocated for it.
 */
export function setPayloadCeiling(bytes: number): void {
  sync(() => addon.setPayloadCeiling(bytes))
}

/** The payload ceiling in force, in bytes. */
export function payloadCeiling(): number {
  return addon.payloadCeiling()
}

/**
 * Verifies a local shard file in one pass (header, every entry's checksum and
 * decode, dead ranges, overlaps, index, footer) and the BigFiles beside it.
 * Damage is reported in `problems`; it rejects only when the file cannot be read.
 * `checkBigfiles: false` leaves the BigFiles to the caller (a store-wide scan
 * checks each object once, whichever shards name it).
 */
export function verifyShardFile(path: string, bigfilesPrefix?: string, opts: { checkBigfiles?: boolean } = {}): Promise<VerifyReport> {
  return later(() => addon.verifyShardFile(path, bigfilesPrefix, opts.checkBigfiles))
}

/**
 * Verifies a shard streamed from elsewhere (S3): its index parsed from the
 * object's tail, then bytes `[0, streamBytes)` fed in order; the tail holds
 * the rest. BigFile entries are left to the caller.
 */
export class ShardVerifier {
  private constructor(private readonly inner: Native.ShardVerifier) {}

  /** Parses the index from the object's last bytes (DES_NEED_MORE if short, DES_CORRUPT if damaged). */
  static async fromTail(tail: Buffer, objectSize: number): Promise<ShardVerifier> {
    return new ShardVerifier(await later(() => addon.ShardVerifier.fromTail(tail, objectSize)))
  }
  /** Feed the object's bytes `[0, streamBytes)`. */
  get streamBytes(): number {
    return this.inner.streamBytes
  }
  get entryCount(): number {
    return this.inner.entryCount
  }
  get checksummed(): boolean {
    return this.inner.checksummed
  }
  entries(start?: number, count?: number): EntryInfo[] {
    return this.inner.entries(start, count)
  }
  /** The next bytes of the object; await each call before the next. */
  feed(chunk: Buffer): Promise<void> {
    return later(() => this.inner.feed(chunk))
  }
  /** Ends the pass: the report, with bytes never fed as problems. */
  async finish(): Promise<VerifyReport> {
    const report = await later(() => this.inner.finish())
    if (report === null) throw new DesError('DES_BAD_ARG', 'this verifier has already finished')
    return report
  }
}

/** Codec names by the id `entryRow` gives. */
const CODEC_NAMES = addon.codecNames() as Codec[]

/** A shard's index (held in Rust) with payload reads and decoding. */
export class ShardReader {
  private constructor(private readonly inner: Native.ShardReader) {}

  /** Opens a local shard file off the event loop. */
  static async open(path: string): Promise<ShardReader> {
    return new ShardReader(await later(() => addon.ShardReader.open(path)))
  }

  /** Opens a local shard file on the calling thread. */
  static openSync(path: string): ShardReader {
    return new ShardReader(sync(() => addon.ShardReader.openSync(path)))
  }

  /** Parses the index from an object's last bytes (DES_NEED_MORE if short). */
  static async fromTail(tail: Buffer, objectSize: number): Promise<ShardReader> {
    return new ShardReader(await later(() => addon.ShardReader.fromTail(tail, objectSize)))
  }

  /** Format version of the shard (1 or 2). */
  get version(): number {
    return this.inner.version
  }
  /** Number of entries in the index. */
  get entryCount(): number {
    return this.inner.entryCount
  }
  /** Size of the index section in bytes (what a cache should weigh it at). */
  get indexSize(): number {
    return this.inner.indexSize
  }
  /** Offset where the data section ends (= where the index starts). */
  get dataEnd(): number {
    return this.inner.dataEnd
  }
  /** Size of the shard file for a local shard, else null. */
  get fileSize(): number | null {
    return this.inner.fileSize
  }
  /** True when the shard carries a checksum block (entries and index are checked on every read). */
  get checksummed(): boolean {
    return this.inner.checksummed
  }
  /** @internal The addon object, for `ShardWriter.continueAfter`. */
  get native(): Native.ShardReader {
    return this.inner
  }

  /** True when the index holds `uid`. */
  has(uid: string): boolean {
    return this.inner.has(uid)
  }
  /** The index entry of `uid` (size, codec, stored size, offset, meta), or null. */
  entry(uid: string): EntryInfo | null {
    // A row, made into the object here: much cheaper than an addon-built object.
    const r = this.inner.entryRow(uid)
    if (r === null) return null
    const [size, storedSize, offset, codec, meta, sha256, crc32c] = r
    if (codec < 0) return { uid, size, isBigfile: true, storedSize, meta, sha256: sha256 ?? undefined }
    // The checksum makes the file's ETag (store.ts etagOf): without it every append would change it.
    return crc32c === null ? { uid, size, codec: CODEC_NAMES[codec], isBigfile: false, storedSize, offset, meta } : { uid, size, codec: CODEC_NAMES[codec], isBigfile: false, storedSize, offset, crc32c, meta }
  }
  /** `count` entries in index order from `start` (default: all); page through large shards. */
  entries(start?: number, count?: number): EntryInfo[] {
    return this.inner.entries(start, count)
  }
  /**
   * Reads a uid from a local shard (BigFiles from `<dir>/<prefix>/`); with
   * `keep`, an inline payload is also kept in that cache.
   */
  read(uid: string, bigfilesPrefix?: string, keep?: KeepIn): Promise<Buffer> {
    return later(() => this.inner.read(uid, bigfilesPrefix, keep?.cache.native, keep?.shard))
  }
  /** `read` on the calling thread. */
  readSync(uid: string, bigfilesPrefix?: string): Buffer {
    return sync(() => this.inner.readSync(uid, bigfilesPrefix))
  }
  /** A local entry's stored bytes, not decoded. */
  readStored(uid: string): Promise<Buffer> {
    return later(() => this.inner.readStored(uid))
  }
  /** Decodes stored bytes fetched by the caller (keeping the result as `read` does). */
  decode(uid: string, stored: Buffer, keep?: KeepIn): Promise<Buffer> {
    return later(() => this.inner.decode(uid, stored, keep?.cache.native, keep?.shard))
  }
  /** Checks stored bytes fetched by the caller against the entry's checksum (DES_CORRUPT on mismatch). */
  checkStored(uid: string, stored: Buffer): void {
    sync(() => this.inner.checkStored(uid, stored))
  }
  /** `decode` on the calling thread, keeping nothing. */
  decodeSync(uid: string, stored: Buffer): Buffer {
    return sync(() => this.inner.decodeSync(uid, stored))
  }
  /** Verifies the whole local shard file (see `verifyShardFile`). */
  verify(bigfilesPrefix?: string): Promise<VerifyReport> {
    return later(() => sync(() => this.inner.verify(bigfilesPrefix)))
  }
  /** Checks a BigFile's bytes against the entry (size and sha256). */
  verifyBigfile(uid: string, data: Buffer): void {
    sync(() => addon.verifyBigfile(this.inner, uid, data))
  }
}

export type PartFiles = Native.PartFiles
export type PartResult = Native.PartResult

/** Fills, stages and commits many local parts with one call (des-core `pack_parts`); a part's `error` is a coded message (`decodeError`); a `busy` part was left alone (another writer held its turn). Payloads `prefetch` made for these files are taken from it. */
export function packParts(parts: PartFiles[], options?: ShardWriterOptions, prefetch?: Prefetch): Promise<PartResult[]> {
  return later(() => addon.packParts(parts, options, prefetch))
}

/** Local sources read and compressed ahead on threads of their own while a run is planned (des-core prefetch.rs), taken by `packParts`. */
export type Prefetch = Native.Prefetch
export const Prefetch = addon.Prefetch

/** Each local source's size, in order, or why not: -1 missing, -2 not a regular file, -3 another failure. Looked at on every core. */
export function statSources(paths: string[]): Promise<number[]> {
  return later(() => addon.statSources(paths))
}

/** Removes, in each folder, the temp files dead writers left that are older than `minAgeMs` (des-core temps.rs); resolves to how many. */
export function removeStaleTemps(dirs: string[], minAgeMs: number): Promise<number> {
  return later(() => addon.removeStaleTemps(dirs, minAgeMs))
}

/** Finds where the entries of a manifest fed in chunks start and end (des-core `ManifestScanner`; src/pack/manifest.ts parses them). */
export type ManifestScan = Native.ManifestScan
export type ManifestFound = Native.ManifestFound
export const ManifestScan = addon.ManifestScan

/** Shards staged by `ShardWriter.stageInto` and committed together (their syncs overlapping). */
export type StagedGroup = Native.StagedGroup
export const StagedGroup = addon.StagedGroup

/** Writes one v2 shard; await each call before the next. */
export class ShardWriter {
  private constructor(private readonly inner: Native.ShardWriter) {}

  /** A new shard at `path` (replacing any file there on finish). */
  static create(path: string, options?: ShardWriterOptions): ShardWriter {
    return new ShardWriter(sync(() => addon.ShardWriter.create(path, options)))
  }

  /** Adds to the shard at `path` (or starts it), waiting for its turn and holding it until finish/abort. */
  static async append(path: string, options?: ShardWriterOptions): Promise<ShardWriter> {
    const inner = await later(() => addon.ShardWriter.append(path, options, true))
    if (!inner) throw new DesError('DES_IO', `no turn on ${path}`)
    return new ShardWriter(inner)
  }

  /** `append`, or null at once when another writer holds the shard's turn (a caller holding other turns must not wait for one). */
  static async tryAppend(path: string, options?: ShardWriterOptions): Promise<ShardWriter | null> {
    const inner = await later(() => addon.ShardWriter.append(path, options, false))
    return inner ? new ShardWriter(inner) : null
  }

  /** Emits only the bytes that follow `old`'s data section into `tailPath`. */
  static continueAfter(old: ShardReader, tailPath: string, options?: ShardWriterOptions): ShardWriter {
    return new ShardWriter(sync(() => addon.ShardWriter.continueAfter(old.native, tailPath, options)))
  }

  /** Adds one file's bytes (compressed with the writer's codec) and its meta (a JSON object or its text); resolves to its entry. */
  add(uid: string, data: Buffer, meta?: string | Record<string, unknown>): Promise<EntryInfo> {
    const metaText = typeof meta === 'string' || meta === undefined ? meta : JSON.stringify(meta)
    return later(() => this.inner.add(uid, data, metaText))
  }
  /**
   * Reads (local paths) and compresses many files on every core, writing them
   * in order; stops before the first that would take the data section past
   * `maxDataSize` (`consumed` says how many went in).
   */
  addFiles(files: PackFile[], maxDataSize?: number): Promise<AddFilesResult> {
    return later(() => sync(() => this.inner.addFiles(files, maxDataSize)))
  }
  /** `addFiles` for local files as parallel arrays (much cheaper to pass for many small files). */
  addPaths(uids: string[], paths: string[], sizes: number[], metas?: Array<string | null>, maxDataSize?: number): Promise<AddFilesResult> {
    return later(() => sync(() => this.inner.addPaths(uids, paths, sizes, metas, maxDataSize)))
  }
  /** True when the shard being written holds `uid` (carried over or added). */
  has(uid: string): boolean {
    return sync(() => this.inner.has(uid))
  }
  /** Entries so far, carried and added. */
  get entryCount(): number {
    return sync(() => this.inner.entryCount)
  }
  /** Size of the shard's data section so far (header + payloads). */
  get dataSize(): number {
    return sync(() => this.inner.dataSize)
  }
  /** Writes index and footer, syncs, and renames into place. */
  finish(): Promise<ShardWriteSummary> {
    return later(() => this.inner.finish())
  }
  /** @internal `finish` without the sync and the putting in place, into `group` (see `StagedGroup`); the writer is used up. */
  stageInto(group: StagedGroup): Promise<void> {
    return later(() => group.stage(this.inner))
  }
  /** Drops the writer: its temp file is removed, the target is untouched. */
  abort(): void {
    this.inner.abort()
  }
}
