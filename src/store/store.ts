// The one place that turns (uid, created_at) into bytes: routing, layout
// (nested with continuations, the reference packer's flat layout, or both in
// turn while a store is converted), the index cache with its re-check rule,
// payload reads and BigFile streams.

import { createHash } from 'node:crypto'
import { pipeline, Transform, Writable, type Readable, type TransformCallback } from 'node:stream'
import type { Layout } from '../config/env'
import { DEFAULT_BIGFILES_PREFIX, DEFAULT_INDEX_CACHE_BYTES, DEFAULT_SHARD_RECHECK_MS, DEFAULT_TAIL_BYTES } from '../config/defaults'
import { DesError, errorCode } from '../errors'
import { payloadCeiling, type EntryInfo, type ShardLocation } from '../native'
import type { ByteRange, ByteSource, ObjectStream, ShardSources } from '../storage/source'
import { EtagMismatchError } from '../storage/source'
import { IndexCache } from './index-cache'
import { PayloadCache } from './payload-cache'
import { bigfileKeyIn, locateIn, lookupsFor, shardKeyIn, type Lookup } from './layout'
import { DamagedShards, openShard, type ShardHandle } from './shard'
import { RecentMap } from './recent-map'
import { checkNotDeleted } from './tombstones'

export interface StoreOptions {
  sources: ShardSources
  nBits: number
  /** One layout, read and written (default nested) ... */
  layout?: Layout
  /** ... or several, looked in in this order (the first is the one written). */
  layouts?: Layout[]
  bigfilesPrefix?: string
  /** Bytes of parsed indexes kept (0 = no cache). */
  indexCacheBytes?: number
  /** Bytes of decoded small payloads kept (0 = no cache, the default here). */
  payloadCacheBytes?: number
  /** Size of the suffix GET that reads footer and index together. */
  tailBytes?: number
  /** How long a cached shard is trusted before a request re-checks its version (default 2 s). */
  shardRecheckMs?: number
  /** Milliseconds on a monotonic clock (default `performance.now`); tests pass one they move. */
  clock?: () => number
  /**
   * A Range of a BigFile is served only once the object's whole bytes
   * matched its sha256, read once per version of the object (default true).
   */
  checkBigfileRanges?: boolean
}

/** BigFile versions remembered as checked whole. */
const CHECKED_BIGFILES = 4096

/** Where a uid was found. */
export interface Found {
  uid: string
  /** The layout it was found in, and its location under that layout's date rule. */
  layout: Layout
  loc: ShardLocation
  /** Which shard of the key's chain (0 = base; continuation or flat NNNN). */
  part: number
  shard: ShardHandle
  entry: EntryInfo
  /** Strong validator of the file's bytes. */
  etag: string
  /** The created_at it was found for (a find again checks the original's tombstones by it). */
  createdAt: string | undefined
}

/** A BigFile's bytes on their way to a client. */
export interface BigfileStream {
  body: Readable
  /** Bytes `body` will deliver. */
  length: number
}

const CACHE_SEPARATOR = '\u0000'

/** Recent finds remembered (about 250 bytes each); the memo starts over when full. */
const MAX_RECENT_FINDS = 65_536

interface RecentFind {
  found: Found
  /** The index-cache key of its shard. */
  ck: string
}

/**
 * Checks a BigFile's bytes as they stream past: their count (a whole file or
 * a range), and for a whole file its sha256. With a hash to check, the last
 * chunk is held back until the hash is known, so a mismatching file never
 * reaches a client whole: the stream fails instead, and the response stops
 * short of its Content-Length.
 */
export class BigfileCheck extends Transform {
  private readonly hash
  private seen = 0
  private held: Buffer | undefined
  constructor(
    private readonly length: number,
    private readonly sha256: string | undefined,
    private readonly what: string,
  ) {
    super()
    this.hash = sha256 === undefined ? undefined : createHash('sha256')
  }
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.length) return cb(new DesError('DES_CORRUPT', `${this.what}: more than the ${this.length} bytes expected`))
    if (this.hash === undefined) return cb(null, chunk)
    this.hash.update(chunk)
    const previous = this.held
    this.held = chunk
    cb(null, previous)
  }
  _flush(cb: TransformCallback): void {
    if (this.seen !== this.length) return cb(new DesError('DES_CORRUPT', `${this.what}: ${this.seen} bytes, expected ${this.length}`))
    if (this.hash !== undefined) {
      const got = this.hash.digest('hex')
      if (got !== this.sha256) return cb(new DesError('DES_CORRUPT', `${this.what}: sha256 ${got} does not match the index (${this.sha256})`))
    }
    cb(null, this.held)
  }
}

/** A BigFile's object not there: damage, unless the shard that named it has changed since (see `Store.withBigfile`). */
class MissingBigfileError extends DesError {
  constructor(what: string) {
    super('DES_CORRUPT', `${what} is missing`)
  }
}

/** A size from an index that a read can trust: a safe, non-negative integer. */
function saneSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0
}

/**
 * The entry itself when its sizes are ones a response can carry, else
 * DES_CORRUPT: an index may hold any u64 (the addon has handed out -1 for
 * 2^64-1), and a size is what Content-Length, the payload cache and the read
 * buffer are sized by.
 */
function checkedEntry(entry: EntryInfo, key: string): EntryInfo {
  if (saneSize(entry.size) && saneSize(entry.storedSize)) return entry
  throw new DesError('DES_CORRUPT', `shard ${key}: uid ${JSON.stringify(entry.uid)} has an impossible size (${entry.size}, stored ${entry.storedSize})`)
}

export class Store {
  readonly sources: ShardSources
  readonly backend: string
  readonly nBits: number
  /** Where this store's files are written (the first of `layouts`). */
  readonly layout: Layout
  /** Where finds look, in order. */
  readonly layouts: readonly Layout[]
  readonly bigfilesPrefix: string
  readonly tailBytes: number
  readonly indexCache: IndexCache<ShardHandle>
  readonly payloadCache: PayloadCache
  /**
   * Recent finds in a cached base shard by (uid, created_at) text: a repeat
   * skips routing and the index lookup. Valid while their shard handle is in
   * the index cache (a handle it lets go is marked retired).
   */
  private readonly recentFinds = new Map<string, RecentFind>()
  /** Shard keys (cache keys) found missing, and when: not asked for again while a shard is trusted. */
  private readonly missingSince = new Map<string, number>()
  /** The memo keys each handle's finds are under, to forget them with the handle. */
  private readonly recentKeysOf = new Map<ShardHandle, string[]>()
  readonly shardRecheckMs: number
  private readonly clock: () => number
  private readonly checkBigfileRanges: boolean
  /** BigFile versions (source, key, etag) whose whole bytes matched their sha256 (`ok`), or are being read to see. */
  private readonly checkedBigfiles = new RecentMap<string, { checking: Promise<void>; ok: boolean }>(CHECKED_BIGFILES)

  constructor(opts: StoreOptions) {
    this.sources = opts.sources
    this.backend = opts.sources.backend
    this.nBits = opts.nBits
    this.layouts = opts.layouts && opts.layouts.length > 0 ? [...opts.layouts] : [opts.layout ?? 'nested']
    this.layout = this.layouts[0]
    this.bigfilesPrefix = opts.bigfilesPrefix ?? DEFAULT_BIGFILES_PREFIX
    this.tailBytes = opts.tailBytes ?? DEFAULT_TAIL_BYTES
    this.indexCache = new IndexCache<ShardHandle>(opts.indexCacheBytes ?? DEFAULT_INDEX_CACHE_BYTES, (shard) => this.retire(shard))
    this.shardRecheckMs = opts.shardRecheckMs ?? DEFAULT_SHARD_RECHECK_MS.local
    this.clock = opts.clock ?? (() => performance.now())
    this.checkBigfileRanges = opts.checkBigfileRanges ?? true
    this.payloadCache = new PayloadCache(opts.payloadCacheBytes ?? 0)
  }

  /** Remote shard versions found damaged: refused again from their tail, their index not fetched again. */
  private readonly damaged = new DamagedShards()

  /** Routes a uid in the layout written (DES_BAD_ARG for a bad created_at). */
  locate(uid: string, createdAt: string): ShardLocation {
    return locateIn(this.layout, uid, createdAt, this.nBits)
  }

  /** Every place a find looks for (uid, created_at), in order. */
  lookups(uid: string, createdAt: string): Lookup[] {
    return lookupsFor(this.layouts, uid, createdAt, this.nBits)
  }

  /** Key of shard `part` of a location's chain in `layout` (default: the layout written). */
  shardKey(loc: ShardLocation, part: number, layout: Layout = this.layout): string {
    return shardKeyIn(layout, loc, part)
  }

  private cacheKey(source: ByteSource, key: string): string {
    return source.id + CACHE_SEPARATOR + key
  }

  /** Opens (or confirms `previous` as) the current version, trusted from now on this store's clock. */
  private async open(source: ByteSource, key: string, previous?: ShardHandle): Promise<ShardHandle> {
    const shard = await openShard(source, key, this.tailBytes, previous, this.damaged, { deletions: true })
    shard.checkedAt = this.clock()
    return shard
  }

  /**
   * Finds a uid: the base shard first, continuations (or flat `_NNNN`) in
   * order only after a miss, then the next place of `lookups` (another
   * layout, or the nested layout under the date as written). A uid missing
   * from a cached index re-checks the object before moving on, so shards
   * appended since are seen. DES_NOT_FOUND when no shard holds the uid;
   * DES_DELETED when the original DES's sidecar of a shard looked in marks
   * it deleted (DES_CORRUPT when that sidecar is damaged).
   */
  async find(uid: string, createdAt: string | Lookup): Promise<Found> {
    return this.findNow(uid, createdAt)
  }

  /**
   * `find` without waiting when it need not: the Found itself when the base
   * shard's index is cached and holds the uid (the common case of a warm
   * retriever), else a promise of it.
   */
  findNow(uid: string, createdAt: string | Lookup): Found | Promise<Found> {
    const memoKey = typeof createdAt === 'string' ? uid + '\n' + createdAt : undefined
    if (memoKey !== undefined) {
      const recent = this.recentFinds.get(memoKey)
      // uid compared too: "a" + "\nX…" and "a\nX" + "…" make the same key.
      if (recent !== undefined && recent.found.uid === uid && this.isCurrent(recent.found.shard)) {
        // Through the index cache, so a hot shard stays recently used there.
        if (this.indexCache.cached(recent.ck) === recent.found.shard) {
          // Its sidecar may have been re-read since it was remembered.
          const tombstones = recent.found.shard.tombstones
          if (tombstones !== undefined) checkNotDeleted(tombstones, uid, createdAt as string)
          return recent.found
        }
      }
    }
    const when = typeof createdAt === 'string' ? createdAt : createdAt.createdAt
    const lookups = typeof createdAt === 'string' ? this.lookups(uid, createdAt) : [createdAt]
    const { layout, loc } = lookups[0]
    const ck = this.cacheKey(this.sources.sourceFor(loc.shardIndex), this.shardKey(loc, 0, layout))
    const shard = this.indexCache.cached(ck)
    if (shard !== undefined && !this.isCurrent(shard)) return this.recheckThenSearch(uid, lookups, ck, shard, when)
    const entry = shard?.reader.entry(uid) ?? null
    if (shard === undefined || entry === null) return this.search(uid, lookups, shard, when)
    if (shard.tombstones !== undefined) checkNotDeleted(shard.tombstones, uid, when)
    const found = { uid, layout, loc, part: 0, shard, entry: checkedEntry(entry, shard.key), etag: this.etagOf(layout, 0, entry, shard), createdAt: when }
    if (memoKey !== undefined) this.remember(memoKey, ck, found)
    return found
  }

  /** True while a cached shard was confirmed current less than `shardRecheckMs` ago. */
  private isCurrent(shard: ShardHandle): boolean {
    return this.clock() - shard.checkedAt < this.shardRecheckMs
  }

  /** Re-checks a cached base shard whose trust ran out (one stat, or one suffix GET), then finds. */
  private async recheckThenSearch(uid: string, lookups: Lookup[], ck: string, shard: ShardHandle, when: string | undefined): Promise<Found> {
    const { layout, loc } = lookups[0]
    const source = this.sources.sourceFor(loc.shardIndex)
    const key = this.shardKey(loc, 0, layout)
    let current: ShardHandle | undefined
    try {
      current = await this.indexCache.recheck(ck, shard, (old) => this.open(source, key, old))
    } catch (err) {
      if ((err as DesError)?.code !== 'DES_NOT_FOUND') throw err
      current = undefined // gone: the search says 404
    }
    return this.search(uid, lookups, current, when)
  }

  private noteMissing(ck: string): void {
    if (this.missingSince.size >= MAX_RECENT_FINDS) this.missingSince.clear()
    this.missingSince.set(ck, this.clock())
  }

  private remember(memoKey: string, ck: string, found: Found): void {
    if (this.recentFinds.size >= MAX_RECENT_FINDS) {
      this.recentFinds.clear()
      this.recentKeysOf.clear()
    }
    this.recentFinds.set(memoKey, { found, ck })
    const keys = this.recentKeysOf.get(found.shard)
    if (keys) keys.push(memoKey)
    else this.recentKeysOf.set(found.shard, [memoKey])
  }

  /** A handle the index cache let go: its finds are forgotten (they would keep its index alive). */
  private retire(shard: ShardHandle): void {
    shard.retired = true
    for (const k of this.recentKeysOf.get(shard) ?? []) {
      if (this.recentFinds.get(k)?.found.shard === shard) this.recentFinds.delete(k)
    }
    this.recentKeysOf.delete(shard)
  }

  /** Finds remembered now (for tests and sizing). */
  get recentFindCount(): number {
    return this.recentFinds.size
  }

  /**
   * The walk of `find` over every lookup in turn (its chain of parts);
   * `base` is the first lookup's base shard when its index was cached;
   * `when` the created_at asked for.
   */
  private async search(uid: string, lookups: Lookup[], base: ShardHandle | undefined, when: string | undefined): Promise<Found> {
    /** Re-checks put off (by cache key), made before the second look. */
    const lacking = new Map<string, () => Promise<void>>()
    for (let attempt = 0; ; attempt++) {
      const missed: string[] = []
      const skipped: string[] = []
      for (let i = 0; i < lookups.length; i++) {
        // A miss in a cached index of an earlier place is re-checked only if no later place holds
        // the uid: a file of the flat layout, or under its date as written, costs no GET on the way.
        const misses = attempt === 0 ? (i < lookups.length - 1 ? { lacking } : {}) : { rechecked: lacking }
        const found = await this.searchChain(uid, lookups[i], i === 0 && attempt === 0 ? base : undefined, missed, skipped, when, misses)
        if (found !== undefined) return found
      }
      // Before a 404, shards taken for missing are asked for again: one created since (a new part, a
      // converted key) is found at once, as a uid appended to a cached shard is.
      if ((skipped.length === 0 && lacking.size === 0) || attempt > 0) throw new DesError('DES_NOT_FOUND', `uid ${JSON.stringify(uid)} is not in ${missed.join(', ')}`)
      for (const ck of skipped) this.missingSince.delete(ck)
      await Promise.all([...lacking.values()].map((recheck) => recheck()))
    }
  }

  /**
   * One chain: parts 0, 1, 2… until one does not exist. Says in `missed`
   * where it looked. With `misses.lacking`, a miss in a cached index is not
   * re-checked at once: its re-check is put there, for the caller to make
   * (and look again) if no other place holds the uid; those of
   * `misses.rechecked` were just re-checked so.
   */
  private async searchChain(
    uid: string,
    { layout, loc }: Lookup,
    base: ShardHandle | undefined,
    missed: string[],
    skipped: string[],
    when: string | undefined,
    misses: { lacking?: Map<string, () => Promise<void>>; rechecked?: ReadonlyMap<string, unknown> } = {},
  ): Promise<Found | undefined> {
    const source = this.sources.sourceFor(loc.shardIndex)
    for (let part = 0; ; part++) {
      const key = this.shardKey(loc, part, layout)
      const ck = this.cacheKey(source, key)
      // The caller's base shard is current (found or rechecked just now); any
      // other cached part (a continuation, another layout's base) is trusted
      // only as long as a base shard is: past that it is checked again, or a
      // replaced or deleted part would be served from the caches for ever.
      let shard = part === 0 && base !== undefined ? base : this.indexCache.cached(ck)
      // A cached index may lack a uid appended since: a miss in it re-checks it once.
      let mayLack = shard !== undefined && misses.rechecked?.has(ck) !== true
      try {
        if (shard !== undefined && shard !== base && !this.isCurrent(shard)) {
          shard = await this.indexCache.recheck(ck, shard, (old) => this.open(source, key, old))
          mayLack = false
        }
        if (shard === undefined) {
          // Known missing a moment ago (another layout's shard, a chain's end): trusted as long as a shard is.
          const since = this.missingSince.get(ck)
          if (since !== undefined && this.clock() - since < this.shardRecheckMs) {
            skipped.push(ck)
            throw new DesError('DES_NOT_FOUND', `no object ${key}`)
          }
          try {
            shard = await this.indexCache.load(ck, () => this.open(source, key))
            this.missingSince.delete(ck)
          } catch (err) {
            if ((err as DesError)?.code === 'DES_NOT_FOUND') this.noteMissing(ck)
            throw err
          }
        }
        // As the original: a shard whose sidecar marks the file deleted says so, whether or not its index holds it.
        if (shard.tombstones !== undefined) checkNotDeleted(shard.tombstones, uid, when)
        let entry = shard.reader.entry(uid)
        if (entry === null && mayLack && misses.lacking !== undefined) {
          const cached = shard
          misses.lacking.set(ck, async () => {
            try {
              await this.indexCache.recheck(ck, cached, (old) => this.open(source, key, old))
            } catch (err) {
              // Gone meanwhile: the next look finds it missing.
              if (errorCode(err) !== 'DES_NOT_FOUND') throw err
            }
          })
        } else if (entry === null && mayLack) {
          shard = await this.indexCache.recheck(ck, shard, (old) => this.open(source, key, old))
          if (shard.tombstones !== undefined) checkNotDeleted(shard.tombstones, uid, when)
          entry = shard.reader.entry(uid)
        }
        if (entry !== null) return { uid, layout, loc, part, shard, entry: checkedEntry(entry, key), etag: this.etagOf(layout, part, entry, shard), createdAt: when }
      } catch (err) {
        if ((err as DesError)?.code !== 'DES_NOT_FOUND') throw err
        const first = this.shardKey(loc, 0, layout)
        missed.push(part === 0 ? `${first} (no such shard)` : part === 1 ? first : `${first} or the ${part - 1} after it`)
        return undefined
      }
    }
  }

  /**
   * A strong ETag, which changes whenever the bytes do: a BigFile's sha256;
   * for an inline file where and how big its stored bytes are (and in which
   * layout) with their CRC32C, or, in a shard without checksums, the
   * version of the shard (a shard rebuilt with other bytes at the same place
   * must not keep the ETag).
   */
  private etagOf(layout: Layout, part: number, entry: EntryInfo, shard: ShardHandle): string {
    if (entry.isBigfile) return `"${entry.sha256}"`
    const where = `${layout === 'flat' ? 'f' : ''}${part.toString(36)}.${(entry.offset ?? 0).toString(36)}.${entry.storedSize.toString(36)}.${entry.size.toString(36)}`
    const what = entry.crc32c !== undefined && entry.crc32c !== null ? entry.crc32c.toString(36) : `v${createHash('sha256').update(shard.etag).digest('hex').slice(0, 16)}`
    return `"${where}.${what}"`
  }

  /** A copy of the decoded bytes of an inline entry when the payload cache holds them (no I/O, no wait). */
  cachedPayload(found: Found): Buffer | undefined {
    if (!this.payloadCache.enabled) return undefined
    const data = Buffer.allocUnsafe(found.entry.size)
    return this.copyCachedPayload(found, data) ? data : undefined
  }

  /**
   * Copies the decoded bytes of an inline entry into the start of `target`
   * when the payload cache holds them (no I/O, no allocation); true if it did.
   */
  copyCachedPayload(found: Found, target: Buffer): boolean {
    if (!this.payloadCache.enabled) return false
    const copied = this.payloadCache.copyInto(found.shard.id, found.entry.offset ?? 0, target)
    // -1 is "not cached", never a length: only a copy of the entry's own size counts.
    return copied >= 0 && copied === found.entry.size
  }

  /**
   * The decoded bytes of an inline entry read from its shard (kept in the
   * payload cache when it is on); an object replaced meanwhile is re-read once.
   */
  readPayload(found: Found): Promise<Buffer> {
    const cache = this.payloadCache
    return this.readFromShard(found, (f) => f.shard.read(f.uid, f.entry, cache.keepIn(f.shard.id)))
  }

  /** The decoded bytes of an inline entry: from the payload cache, else from its shard. */
  async read(found: Found): Promise<Buffer> {
    return this.cachedPayload(found) ?? (await this.readPayload(found))
  }

  /**
   * The stored bytes of an inline entry as they are in the shard (for a zstd
   * entry: one zstd frame, what `Content-Encoding: zstd` sends).
   */
  readStored(found: Found): Promise<Buffer> {
    return this.readFromShard(found, (f) => f.shard.readStored(f.uid, f.entry))
  }

  private async readFromShard(found: Found, read: (f: Found) => Promise<Buffer>): Promise<Buffer> {
    try {
      return await read(found)
    } catch (err) {
      // Replaced (If-Match refused) or removed since it was found: found again, or not at all.
      if (!(err instanceof EtagMismatchError) && (err as DesError)?.code !== 'DES_NOT_FOUND') throw err
      this.indexCache.delete(this.cacheKey(found.shard.source, found.shard.key))
      // Found again everywhere it may be, not only where it was: a shard
      // removed by `des convert` has its files in the nested layout by then.
      const again = await this.find(found.uid, found.createdAt ?? { layout: found.layout, loc: found.loc })
      // Other bytes now: what the caller worked out from the old version
      // (ETag, type, range, its answer to If-Range) must not go out with them.
      if (again.etag !== found.etag) throw new DesError('DES_CONFLICT', `uid ${JSON.stringify(found.uid)} changed while it was being read; retry`, { uid: found.uid })
      return read(again)
    }
  }

  /** Finds and reads an inline file, or streams a BigFile whole (convenience for callers outside HTTP); found again once if it changes meanwhile. */
  async get(uid: string, createdAt: string): Promise<Buffer> {
    const found = await this.find(uid, createdAt)
    if (!found.entry.isBigfile) {
      return this.read(found).catch(async (err: unknown) => {
        if ((err as DesError)?.code !== 'DES_CONFLICT') throw err
        const again = await this.find(uid, createdAt)
        if (!again.entry.isBigfile) return this.read(again)
        return this.readBigfile(again)
      })
    }
    return this.readBigfile(found)
  }

  /** A BigFile's bytes, whole (checked against its sha256 as they stream). */
  private async readBigfile(found: Found): Promise<Buffer> {
    const { body } = await this.streamBigfile(found)
    const chunks: Buffer[] = []
    for await (const c of body) chunks.push(c as Buffer)
    return Buffer.concat(chunks)
  }

  /** Key of a found BigFile's object. */
  bigfileKey(found: Found): string {
    return bigfileKeyIn(found.layout, found.loc.dateDir, found.entry.sha256!, this.bigfilesPrefix)
  }

  /**
   * What a HEAD checks, so it answers as a GET would begin: an inline entry
   * within the payload ceiling (as a read refuses it, before any byte), a
   * BigFile's object there with the size the index says.
   */
  async checkReadable(found: Found): Promise<void> {
    if (found.entry.isBigfile) return this.withBigfile(found, (f) => this.checkBigfileObject(f))
    const { size, storedSize } = found.entry
    const ceiling = payloadCeiling()
    if (Math.max(size, storedSize) > ceiling) {
      throw new DesError('DES_CORRUPT', `payload of uid ${JSON.stringify(found.uid)}: ${Math.max(size, storedSize)} bytes is over the payload ceiling of ${ceiling} bytes (DES_MAX_PAYLOAD_BYTES)`)
    }
  }

  /** A BigFile's object is there with the size the index says (a 1-byte read). */
  private async checkBigfileObject(found: Found): Promise<void> {
    const key = this.bigfileKey(found)
    const what = `BigFile ${key} of uid ${JSON.stringify(found.uid)}`
    let size: number
    try {
      // One byte, counted as a BigFile read (not a shard's tail).
      const { body, objectSize } = await found.shard.source.stream(key, found.entry.size > 0 ? { start: 0, end: 0 } : undefined, { type: 'bigfile' })
      body.destroy()
      size = objectSize
    } catch (err) {
      if ((err as DesError)?.code === 'DES_NOT_FOUND') throw new MissingBigfileError(what)
      throw err
    }
    if (size !== found.entry.size) throw new DesError('DES_CORRUPT', `${what} is ${size} bytes, the index says ${found.entry.size}`)
  }

  /**
   * A BigFile's bytes (or one range of them) streamed from its object, never
   * buffered whole. The object's size must match the index (DES_CORRUPT
   * before any byte). The stream fails if the object delivers more or fewer
   * bytes than asked; a whole-file stream also checks the sha256 and, on a
   * mismatch, fails without delivering its last chunk. A range is served
   * only from a version of the object whose whole bytes matched the sha256
   * (read through once, then remembered), unless that check is off.
   */
  streamBigfile(found: Found, range?: ByteRange): Promise<BigfileStream> {
    return this.withBigfile(found, (f) => this.streamBigfileOf(f, range))
  }

  /**
   * `use(found)`; when the BigFile's object is missing, and the shard that
   * named it is no longer the version it was found in (replaced, or removed
   * as `des convert --delete-source` removes a flat key with its BigFiles),
   * the find was stale: the file is found again and `use` runs once more
   * (DES_CONFLICT when it has other bytes now). Missing from a shard that
   * has not changed, it is damage (DES_CORRUPT).
   */
  private async withBigfile<T>(found: Found, use: (f: Found) => Promise<T>): Promise<T> {
    try {
      return await use(found)
    } catch (err) {
      if (!(err instanceof MissingBigfileError)) throw err
      const source = found.shard.source
      const key = found.shard.key
      const ck = this.cacheKey(source, key)
      let current: ShardHandle | undefined
      try {
        current = await this.indexCache.recheck(ck, found.shard, (old) => this.open(source, key, old))
      } catch (gone) {
        if (errorCode(gone) !== 'DES_NOT_FOUND') throw gone
      }
      if (current === found.shard) throw err
      const again = await this.find(found.uid, found.createdAt ?? { layout: found.layout, loc: found.loc })
      if (again.etag !== found.etag) throw new DesError('DES_CONFLICT', `uid ${JSON.stringify(found.uid)} changed while it was being read; retry`, { uid: found.uid })
      return use(again)
    }
  }

  private async streamBigfileOf(found: Found, range?: ByteRange): Promise<BigfileStream> {
    const key = this.bigfileKey(found)
    const size = found.entry.size
    const what = `BigFile ${key} of uid ${JSON.stringify(found.uid)}`
    let stream = await this.openBigfile(found, key, what, range)
    if (range && this.checkBigfileRanges) {
      // A source that names no version (an S3-compatible server without ETags) is checked every time.
      const version = stream.etag === undefined ? undefined : `${found.shard.source.id}\u0000${key}\u0000${stream.etag}`
      const known = version === undefined ? undefined : this.checkedBigfiles.get(version)
      if (known?.ok === true) {
        // Recently asked for: the last to be let go.
        this.checkedBigfiles.set(version!, known)
      } else {
        // Not known whole yet: this range waits for that read (one per version, whoever asks), then opens again.
        stream.body.destroy()
        await this.checkedWhole(found, key, what, version, stream.etag)
        stream = await this.openBigfile(found, key, what, range, stream.etag)
      }
    }
    const length = range ? range.end - range.start + 1 : size
    const check = new BigfileCheck(length, range ? undefined : found.entry.sha256!, what)
    // pipeline, not pipe: a client that leaves destroys `check`, and with it the object stream (and its file).
    return { body: pipeline(stream.body, check, () => {}), length }
  }

  /** A BigFile's object (or a range of it) opened, its size checked against the index. */
  private async openBigfile(found: Found, key: string, what: string, range?: ByteRange, etag?: string): Promise<ObjectStream> {
    let stream
    try {
      stream = await found.shard.source.stream(key, range, { type: 'bigfile', etag })
    } catch (err) {
      if ((err as DesError)?.code === 'DES_NOT_FOUND') throw new MissingBigfileError(what)
      throw err
    }
    if (stream.objectSize !== found.entry.size) {
      stream.body.destroy()
      throw new DesError('DES_CORRUPT', `${what} is ${stream.objectSize} bytes, the index says ${found.entry.size}`)
    }
    return stream
  }

  /**
   * Reads a BigFile version whole through its sha256 check, once per
   * `version`: remembered when it matched, and when it did not (damage: the
   * next range of that version is refused without reading it again);
   * forgotten after any other failure (the object changed, S3 did not answer).
   */
  private checkedWhole(found: Found, key: string, what: string, version: string | undefined, etag: string | undefined): Promise<void> {
    const known = version === undefined ? undefined : this.checkedBigfiles.get(version)
    if (known !== undefined) return known.checking
    const entry = { checking: Promise.resolve(), ok: false }
    entry.checking = (async () => {
      const whole = await this.openBigfile(found, key, what, undefined, etag)
      const check = new BigfileCheck(found.entry.size, found.entry.sha256!, what)
      await new Promise<void>((resolve, reject) => pipeline(whole.body, check, new Writable({ write: (_chunk, _enc, done) => done() }), (err) => (err ? reject(err) : resolve())))
    })().then(
      () => void (entry.ok = true),
      (err: unknown) => {
        if (version !== undefined && errorCode(err) !== 'DES_CORRUPT' && this.checkedBigfiles.get(version) === entry) this.checkedBigfiles.delete(version)
        throw err
      },
    )
    if (version !== undefined) this.checkedBigfiles.set(version, entry)
    return entry.checking
  }

  /** Every source answers (for /ready). */
  async ping(): Promise<void> {
    await Promise.all(this.sources.all().map((s) => s.ping()))
  }
}
