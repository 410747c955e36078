// One opened shard: its parsed index (held in Rust) and how to read a
// payload from it. A local file is opened by the native reader (payload read
// and decoded by positional reads off the event loop); any other source is
// read as its tail (footer + index in one GET, a second GET only for the part
// of a larger index the tail missed), then one range GET per payload. The
// original's deletion sidecar beside it is read at the same time.

import { DesError, errorCode } from '../errors'
import { footerFromTail, indexStartIsForeign, shardHeaderVersion, ShardReader, type EntryInfo, type KeepIn } from '../native'
import { EtagMismatchError, type ByteSource, type ObjectTail } from '../storage/source'
import { RecentMap } from './recent-map'
import { readSidecar, type Sidecar, type Tombstones } from './tombstones'

/** Fixed cost of a cached shard besides its index bytes (JS object, key, native handle). */
const OVERHEAD = 512

export interface ShardHandle {
  /** Unique in this process for each opened version of a shard (with an entry's offset, names its payload in the payload cache). */
  readonly id: number
  readonly key: string
  readonly source: ByteSource
  readonly reader: ShardReader
  /** Version of the object this index was read from. */
  readonly etag: string
  /** Size of that version of the object. */
  readonly objectSize: number
  readonly weight: number
  /** Set once the index cache has let this handle go: what was found in it must be found again. */
  retired: boolean
  /** When (performance.now()) this version was last confirmed as the current one. */
  checkedAt: number
  /** The original's deletion sidecar beside the shard, as last read (with the shard, and at each re-check). */
  sidecar: Sidecar | undefined
  /** `sidecar.tombstones`: undefined, the common case, costs a find nothing. */
  tombstones: Tombstones | undefined
  /** The decoded payload of an inline entry (also kept in `keep` when given). */
  read(uid: string, entry: EntryInfo, keep?: KeepIn): Promise<Buffer>
  /** The stored (possibly compressed) bytes of an inline entry, as they are in the shard. */
  readStored(uid: string, entry: EntryInfo): Promise<Buffer>
}

function withKey(err: unknown, key: string): unknown {
  const e = err as DesError
  if (e instanceof DesError && (e.code === 'DES_CORRUPT' || e.code === 'DES_BAD_ARG')) {
    // The native messages say what is wrong; say in which shard.
    return new DesError(e.code === 'DES_BAD_ARG' ? 'DES_CORRUPT' : e.code, `shard ${key}: ${e.message}`, { cause: err })
  }
  return err
}

/** A native message names the machine's path of the file; callers know the shard by its key (withKey adds it). */
function withoutPath(err: unknown, file: string): unknown {
  if (!(err instanceof DesError) || !err.message.includes(file)) return err
  return new DesError(err.code, err.message.split(`${file}: `).join('').split(file).join('the shard'), { cause: err })
}

let openedCount = 0

/** What every opened shard holds: where it is, its index, its version, its cache weight. */
abstract class OpenedShard implements ShardHandle {
  readonly id = ++openedCount
  readonly weight: number
  retired = false
  checkedAt = performance.now()
  tombstones: Tombstones | undefined
  constructor(
    readonly key: string,
    readonly source: ByteSource,
    readonly reader: ShardReader,
    readonly etag: string,
    readonly objectSize: number,
    public sidecar: Sidecar | undefined,
  ) {
    this.weight = reader.indexSize + OVERHEAD
    this.tombstones = sidecar?.tombstones
  }

  abstract read(uid: string, entry: EntryInfo, keep?: KeepIn): Promise<Buffer>
  abstract readStored(uid: string, entry: EntryInfo): Promise<Buffer>
}

class LocalShard extends OpenedShard {
  async read(uid: string, _entry: EntryInfo, keep?: KeepIn): Promise<Buffer> {
    try {
      return await this.reader.read(uid, undefined, keep)
    } catch (err) {
      throw this.readError(err)
    }
  }

  async readStored(uid: string): Promise<Buffer> {
    try {
      return await this.reader.readStored(uid)
    } catch (err) {
      throw this.readError(err)
    }
  }

  private readError(err: unknown): unknown {
    // The file was replaced (an append) since its index was read: the store re-finds.
    if ((err as DesError)?.code === 'DES_CHANGED') return new EtagMismatchError(this.key)
    return withKey(err, this.key)
  }
}

class RemoteShard extends OpenedShard {
  /** Stored bytes as fetched, checked against the entry's checksum before anyone sends them. */
  async readStored(uid: string, entry: EntryInfo): Promise<Buffer> {
    const stored = await this.fetchStored(entry)
    try {
      this.reader.checkStored(uid, stored)
    } catch (err) {
      throw withKey(err, this.key)
    }
    return stored
  }

  private fetchStored(entry: EntryInfo): Promise<Buffer> {
    return this.source.getRange(this.key, entry.offset ?? 0, entry.storedSize, 'payload', this.etag)
  }

  async read(uid: string, entry: EntryInfo, keep?: KeepIn): Promise<Buffer> {
    // decode checks the checksum itself, before decoding.
    const stored = await this.fetchStored(entry)
    try {
      return await this.reader.decode(uid, stored, keep)
    } catch (err) {
      throw withKey(err, this.key)
    }
  }
}

/** The index of a remote object from its tail, fetching the rest of a larger index once. */
async function indexFromTail(source: ByteSource, key: string, tail: ObjectTail): Promise<ShardReader> {
  try {
    return await ShardReader.fromTail(tail.bytes, tail.objectSize)
  } catch (err) {
    if ((err as DesError)?.code !== 'DES_NEED_MORE') throw withKey(err, key)
  }
  try {
    return await ShardReader.fromTail(await withIndexBefore(source, key, tail), tail.objectSize)
  } catch (err) {
    throw withKey(err, key)
  }
}

/** Bytes of a large index fetched first, before the rest (as a local reader reads its first MiB). */
const FIRST_INDEX_FETCH = 1 << 20

/**
 * A tail that does not reach its index start, with the index before it
 * fetched: the bytes from the index's start to the object's end. A section
 * larger than FIRST_INDEX_FETCH is fetched in two steps, so that a damaged
 * footer stating gigabytes of index over an object of zeros is refused from
 * the index's first bytes (a v2 index whose entries are followed by
 * anything but its checksum block), not after fetching all it states.
 */
export async function withIndexBefore(source: ByteSource, key: string, tail: ObjectTail): Promise<Buffer> {
  const footer = footerFromTail(tail.bytes, tail.objectSize)
  const tailStart = tail.objectSize - tail.bytes.length
  const before = tailStart - footer.indexOffset
  if (before <= FIRST_INDEX_FETCH) return Buffer.concat([await source.getRange(key, footer.indexOffset, before, 'index', tail.etag), tail.bytes])
  const first = await source.getRange(key, footer.indexOffset, FIRST_INDEX_FETCH, 'index', tail.etag)
  if (indexStartIsForeign(first)) {
    // The walk is a v2 walk: the header says whether this index is one.
    const header = await source.getRange(key, 0, 8, 'index', tail.etag)
    if (shardHeaderVersion(header) === 2) {
      throw new DesError('DES_CORRUPT', `the index at byte ${footer.indexOffset} (${footer.indexSize} bytes, as the footer says) has bytes after its last entry that are not a checksum block`)
    }
  }
  const rest = await source.getRange(key, footer.indexOffset + FIRST_INDEX_FETCH, before - FIRST_INDEX_FETCH, 'index', tail.etag)
  return Buffer.concat([first, rest, tail.bytes])
}

/** `shard` was just found to be the current version, its sidecar as read now: trusted anew from now. */
function confirmed(shard: ShardHandle, sidecar: Sidecar | undefined): ShardHandle {
  shard.sidecar = sidecar
  shard.tombstones = sidecar?.tombstones
  shard.checkedAt = performance.now()
  return shard
}

/**
 * The shard's own read and its sidecar's, made together (one round trip on
 * S3): the shard's failure first (a missing shard is not found, whatever its
 * sidecar), then the sidecar's (storage failing there, the shard is not served).
 */
async function withSidecar<T>(shard: Promise<T>, sidecar: Promise<Sidecar | undefined>): Promise<[T, Sidecar | undefined]> {
  const [a, b] = await Promise.allSettled([shard, sidecar])
  if (a.status === 'rejected') throw a.reason
  if (b.status === 'rejected') throw b.reason
  return [a.value, b.value]
}

/**
 * Remote shards found damaged, by key and version (etag), a bounded number:
 * a request for one of them costs its tail, not its index fetched again.
 * A new version of the object is read as any other.
 */
export class DamagedShards {
  private readonly known: RecentMap<string, { etag: string; err: unknown }>

  constructor(max = 1024) {
    this.known = new RecentMap(max)
  }

  get(key: string, etag: string): unknown {
    const known = this.known.get(key)
    return known?.etag === etag ? known.err : undefined
  }

  set(key: string, etag: string, err: unknown): void {
    this.known.set(key, { etag, err })
  }
}

/**
 * Opens the shard at `key`; with `previous`, returns `previous` itself when
 * the object has not changed since (the re-check before a 404).
 * DES_NOT_FOUND when there is no such object. With `damaged`, a remote
 * version found damaged before is refused again from its tail. With
 * `deletions`, the original's deletion sidecar is read too (by those that
 * hand files out, or move them: a writer appending, or a read-back of what a
 * run stored, has no use for it and does not pay its request).
 */
export async function openShard(source: ByteSource, key: string, tailBytes: number, previous?: ShardHandle, damaged?: DamagedShards, opts: { deletions?: boolean } = {}): Promise<ShardHandle> {
  const readDeletions = (): Promise<Sidecar | undefined> => (opts.deletions ? readSidecar(source, key, previous?.sidecar) : Promise.resolve(undefined))
  if (source.localPath && source.localEtag) {
    // stat before open: if the file is replaced in between, the stored etag is
    // the older one, so the next miss re-opens (never the reverse).
    const [etag, sidecar] = await withSidecar(source.localEtag(key), readDeletions())
    if (previous && previous.etag === etag) return confirmed(previous, sidecar)
    let reader: ShardReader
    const file = source.localPath(key)
    try {
      reader = await ShardReader.open(file)
    } catch (err) {
      // Gone between the stat and the open: as absent as if the stat had said so.
      if ((err as DesError)?.code === 'DES_NO_FILE') {
        throw new DesError('DES_NOT_FOUND', `no object ${key}`)
      }
      throw withKey(withoutPath(err, file), key)
    }
    return new LocalShard(key, source, reader, etag, reader.fileSize ?? reader.dataEnd + reader.indexSize, sidecar)
  }
  const [tail, sidecar] = await withSidecar(source.getTail(key, tailBytes), readDeletions())
  if (previous && previous.etag === tail.etag) return confirmed(previous, sidecar)
  // By source and key: zones and layouts are other sources and keys.
  const where = `${source.id}\u0000${key}`
  const known = damaged?.get(where, tail.etag)
  if (known !== undefined) throw known
  let reader: ShardReader
  try {
    reader = await indexFromTail(source, key, tail)
  } catch (err) {
    if (errorCode(err) === 'DES_CORRUPT') damaged?.set(where, tail.etag, err)
    throw err
  }
  return new RemoteShard(key, source, reader, tail.etag, tail.objectSize, sidecar)
}
