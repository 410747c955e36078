// Packing into S3: `<prefix><date>/<HEX>[.<part>].des`, BigFiles in
// `<prefix><date>/<bigfiles prefix>/<sha256>`.
//
// Appending to an object: read its tail (footer + index), write only the new
// tail locally (`ShardWriter.continueAfter`), then build the new object with a
// multipart upload whose first part is the old data section, copied
// server-side (UploadPartCopy) when it is at least 5 MiB. The upload completes
// only if the old object is unchanged (`IfMatch: <ETag>`; a new key
// `IfNoneMatch: *`); on a conflict the whole part is redone against the new
// object. After completing, the tail is read back and every uid checked.
// This file decides what to write; storage/s3-upload.ts how (the requests).

import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3'
import { DesError } from '../errors'
import { makeTempDir, removeTempDir } from '../temp-dir'
import { noCredentials, s3ErrorKind, s3Status } from '../storage/s3-errors'
import { S3Uploader } from '../storage/s3-upload'
import { ShardReader, ShardWriter, shardHeaderVersion } from '../native'
import { DEFAULT_TAIL_BYTES, S3_KEYS_AT_ONCE } from '../config/defaults'
import { listUnder, S3Source } from '../storage/s3'
import { s3ObjectKey } from '../storage/s3-key'
import type { ByteSource } from '../storage/source'
import { bigfileKeyIn, shardDatePrefixIn, shardKeyIn } from '../store/layout'
import { openShard } from '../store/shard'
import { fillWriter, type FillContext, type FillResult, type WriterSettings } from './fill'
import { passOver, type PartWrite, type ShardSink } from './local-target'
import type { KeyPlan, PlannedInput } from './plan'
import type { KnownPart, S3Hooks } from './types'

export type { S3Hooks }

/** A shard's header: magic and layout version. */
const HEADER_BYTES = 8

/** Attempts at one part when other writers keep changing the object. */
const CONFLICT_ATTEMPTS = 8


/** An object's current shard index, as of `etag`. */
type Tail = KnownPart

/** The object changed under us (conditional write or copy refused). */
export function isConflict(err: unknown): boolean {
  if (err instanceof DesError) return err.code === 'DES_CONFLICT'
  return s3ErrorKind(err) === 'conflict'
}

function isMissing(err: unknown): boolean {
  return s3ErrorKind(err) === 'missing'
}

/** An S3 failure as a DesError that says what was being done. */
export function s3Failure(what: string, err: unknown): DesError {
  if (err instanceof DesError) return err
  const msg = (err as Error)?.message || (err as Error)?.name || String(err)
  const status = s3Status(err)
  switch (s3ErrorKind(err)) {
    case 'no-credentials':
      return noCredentials(err)
    case 'conflict':
      return new DesError('DES_CONFLICT', `${what}: the object changed meanwhile (${msg})`, { cause: err })
    case 'local-io':
      return new DesError('DES_IO', `${what}: ${msg}`, { cause: err })
    case 'unreachable':
      if (status === undefined) return new DesError('DES_UNAVAILABLE', `${what}: S3 is unreachable: ${msg}`, { cause: err })
      return new DesError('DES_UNAVAILABLE', `${what}: S3 answered ${status}: ${msg}`, { cause: err })
    case 'forbidden':
      return new DesError('DES_FORBIDDEN', `${what}: access denied: ${msg}`, { cause: err })
    case 'no-bucket':
      return new DesError('DES_NOT_FOUND', `${what}: no such bucket`, { cause: err })
    case 'busy':
    case 'server':
      return new DesError('DES_UNAVAILABLE', `${what}: S3 answered ${status}: ${msg}`, { cause: err })
    default:
      return new DesError('DES_STORAGE', `${what}: S3 answered ${status}: ${msg}`, { cause: err })
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * A date whose shards this run looks at this many of is listed once (a
 * ListObjectsV2 a 1,000 keys) instead of a tail GET for every key that turns
 * out not to exist. Below it a listing of a large date could cost more
 * requests than it saves.
 */
export const LIST_FROM_KEYS = 32

export class S3Target implements ShardSink {
  readonly keysAtOnce = S3_KEYS_AT_ONCE
  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    /** '' or ending in '/'. */
    readonly prefix: string,
    private readonly settings: WriterSettings,
    private readonly hooks: S3Hooks = {},
    /** Where parts are built before upload (default the OS temp dir). */
    private readonly tmpRoot?: string,
  ) {
    // Keys here carry the prefix already.
    this.source = new S3Source(client, { bucket, prefix: '' })
    this.uploader = new S3Uploader(client, bucket)
  }

  /** How objects are written (multipart, server-side copy, conditional completion). */
  private readonly uploader: S3Uploader

  /** Shards read as the store reads them (tails and index ranges, counted in des_s3_range_calls_total). */
  private readonly source: ByteSource

  /** Keys of this run by the prefix of their date's shards (`expect`). */
  private readonly expected = new Map<string, number>()
  /** The shard keys found under a date's prefix, listed once per run. */
  private readonly listings = new Map<string, Promise<Set<string>>>()
  /** BigFile uploads under way, by object key. */
  private readonly bigfileUploads = new Map<string, Promise<number>>()

  /**
   * The keys this run will write: dates with at least LIST_FROM_KEYS of them
   * are listed instead of probed key by key. A listing only saves requests:
   * a key created after it is caught by the conditional write (a conflict,
   * then the part is redone against the object as it is).
   */
  expect(keys: Iterable<Pick<KeyPlan, 'dateDir'>>): void {
    for (const k of keys) {
      const prefix = this.datePrefix(k.dateDir)
      this.expected.set(prefix, (this.expected.get(prefix) ?? 0) + 1)
    }
  }

  /** The key prefix of a date's shards in this store (and no other date's). */
  private datePrefix(dateDir: string): string {
    return s3ObjectKey(this.prefix, shardDatePrefixIn(this.settings.layout ?? 'nested', dateDir))
  }

  /** False when the listing of the key's date does not hold it, true when it does; undefined when the date is not listed. */
  private async listed(plan: Pick<KeyPlan, 'dateDir'>, key: string): Promise<boolean | undefined> {
    const prefix = this.datePrefix(plan.dateDir)
    if ((this.expected.get(prefix) ?? 0) < LIST_FROM_KEYS) return undefined
    let listing = this.listings.get(prefix)
    if (!listing) {
      listing = this.listKeys(prefix)
      this.listings.set(prefix, listing)
    }
    return (await listing).has(key)
  }

  /** Keys directly under `prefix` (not below a further '/': a date's BigFiles are not listed). */
  private async listKeys(prefix: string): Promise<Set<string>> {
    const keys = new Set<string>()
    try {
      for await (const o of listUnder(this.client, this.bucket, prefix, '/')) keys.add(o.Key)
    } catch (err) {
      throw s3Failure(`list s3://${this.bucket}/${prefix}`, err)
    }
    return keys
  }

  /** The bucket answers (else: unreachable, missing or forbidden, said plainly). */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }))
    } catch (err) {
      if (isMissing(err)) throw new DesError('DES_NOT_FOUND', `bucket ${this.bucket} does not exist`, { cause: err })
      throw s3Failure(`bucket ${this.bucket}`, err)
    }
  }

  key(plan: Pick<KeyPlan, 'dateDir' | 'shardHex'>, part: number): string {
    return s3ObjectKey(this.prefix, shardKeyIn(this.settings.layout ?? 'nested', plan, part))
  }

  /**
   * The object's index as the store reads it (`openShard`: a suffix GET of
   * the configured tail size, one more GET if the index is larger); null when
   * there is no such object.
   */
  async readTail(key: string): Promise<Tail | null> {
    try {
      const shard = await openShard(this.source, key, this.settings.tailBytes ?? DEFAULT_TAIL_BYTES)
      return { reader: shard.reader, etag: shard.etag, size: shard.objectSize }
    } catch (err) {
      if ((err as DesError)?.code === 'DES_NOT_FOUND') return null
      // An S3 answer keeps the packer's codes (a 403 is DES_FORBIDDEN here, a 5xx unavailable).
      const cause = (err as { cause?: unknown })?.cause
      if (err instanceof DesError && cause !== undefined && !(cause instanceof DesError)) throw s3Failure(`read s3://${this.bucket}/${key}`, cause)
      throw err
    }
  }

  async existingParts(plan: KeyPlan): Promise<ShardReader[]> {
    const readers: ShardReader[] = []
    for (let part = 0; ; part++) {
      const key = this.key(plan, part)
      if ((await this.listed(plan, key)) === false) return readers
      const tail = await this.readTail(key)
      if (!tail) return readers
      readers.push(tail.reader)
    }
  }

  async writePart(plan: KeyPlan, part: number, items: PlannedInput[], maxShardSize: number | undefined, ctx: FillContext): Promise<PartWrite> {
    const key = this.key(plan, part)
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.tryPart(plan, part, items, maxShardSize, ctx, attempt)
      } catch (err) {
        if (!isConflict(err)) throw err
        if (attempt + 1 >= CONFLICT_ATTEMPTS) {
          throw new DesError('DES_CONFLICT', `s3://${this.bucket}/${key}: other writers kept changing it; gave up after ${CONFLICT_ATTEMPTS} attempts`, { cause: err })
        }
        await sleep(Math.min(2000, 50 * 2 ** attempt) * (0.5 + Math.random()))
      }
    }
  }

  private async tryPart(plan: KeyPlan, part: number, items: PlannedInput[], maxShardSize: number | undefined, ctx: FillContext, attempt: number): Promise<PartWrite> {
    const key = this.key(plan, part)
    // The first try builds on the part as the caller last read it, if it did.
    // A retry reads it again: the conflict says it changed.
    let known = attempt === 0 ? ctx.knownPart?.(plan, part) : undefined
    if (attempt === 0 && known === undefined && (await this.listed(plan, key)) === false) known = null
    const old = known !== undefined ? known : await this.readTail(key)
    if (maxShardSize !== undefined && old && old.size >= maxShardSize) return passOver(old.reader, items, ctx)
    const tmp = await makeTempDir('des-pack-', this.tmpRoot)
    const bigDir = path.join(tmp, 'bigfiles')
    const opts = { ...this.settings.writer, replace: Boolean(ctx.replace), bigfilesDir: bigDir }
    let writer: ShardWriter | undefined
    let fill: FillResult | undefined
    try {
      let out: string
      let mode: 'new' | 'rewrite' | 'continue'
      if (!old) {
        mode = 'new'
        out = path.join(tmp, 'new.des')
        writer = ShardWriter.create(out, opts)
      } else if (old.reader.version !== 2 || !old.reader.checksummed || (await this.headerVersion(key, old.etag)) !== 2) {
        // A v1 header cannot sit in front of a v2 index, and entries without
        // checksums must be read (and checked) to get them: rewrite it whole, once.
        mode = 'rewrite'
        out = path.join(tmp, 'old.des')
        await this.uploader.download(key, old.etag, out)
        writer = await ShardWriter.append(out, opts)
      } else {
        mode = 'continue'
        out = path.join(tmp, 'tail.bin')
        writer = ShardWriter.continueAfter(old.reader, out, opts)
      }
      fill = await fillWriter(writer, items, maxShardSize, ctx)
      if (fill.added.length === 0) {
        writer.abort()
        writer = undefined
        return { fill, done: Promise.resolve(null) }
      }
      const summary = await writer.finish()
      writer = undefined
      // BigFiles first: a shard never names an object that is not there.
      const bigfileBytes = await this.uploadBigfiles(plan, bigDir)
      const outSize = (await fsp.stat(out)).size
      const hook = async () => this.hooks.beforeComplete?.(key, attempt)
      if (mode === 'continue') await this.uploader.putAppended(key, { etag: old!.etag, dataEnd: old!.reader.dataEnd }, out, outSize, hook)
      else await this.uploader.putFile(key, out, outSize, mode === 'new' ? { IfNoneMatch: '*' } : { IfMatch: old!.etag }, hook)
      if (!ctx.readBackByCaller) await this.verify(key, fill.added)
      const shard = { key, files: fill.added.length, uids: fill.added.map((p) => p.input.uid), bytesIn: summary.bytesIn, bytesStored: summary.bytesStored + bigfileBytes }
      return { fill, done: Promise.resolve(shard) }
    } catch (err) {
      writer?.abort()
      // A redone part reports its files again.
      if (fill) ctx.progress(-fill.reportedFiles, -fill.reportedBytes)
      throw s3Failure(`s3://${this.bucket}/${key}`, err)
    } finally {
      await removeTempDir(tmp)
    }
  }

  /**
   * The layout version the object's header states (DES_CORRUPT when it is no
   * header). An append copies the old object's first bytes as they are: a
   * damaged header would be carried into the new object, and its new files
   * stored in a shard that every check refuses (a local append refuses it).
   */
  private async headerVersion(key: string, etag: string): Promise<number> {
    const header = await this.source.getRange(key, 0, HEADER_BYTES, 'index', etag)
    try {
      return shardHeaderVersion(header)
    } catch (err) {
      throw new DesError('DES_CORRUPT', `shard ${key}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** After completing: the tail read back, every added uid in its index. */
  private async verify(key: string, added: PlannedInput[]): Promise<void> {
    const tail = await this.readTail(key)
    if (!tail) throw new DesError('DES_STORAGE', `s3://${this.bucket}/${key} is missing right after its upload completed`)
    for (const p of added) {
      if (!tail.reader.has(p.input.uid)) {
        throw new DesError('DES_CORRUPT', `s3://${this.bucket}/${key} was uploaded but its index lacks uid ${JSON.stringify(p.input.uid)} (${p.label})`)
      }
    }
  }

  /**
   * BigFiles from the writer's temp folder; an object proven to hold the same
   * bytes (size and ETag) is kept, any other written over. Returns the bytes
   * uploaded: the writer stages every BigFile of the part, kept ones too.
   */
  private async uploadBigfiles(plan: KeyPlan, dir: string): Promise<number> {
    let names: string[]
    try {
      names = (await fsp.readdir(dir)).filter((n) => /^[0-9a-f]{64}$/.test(n))
    } catch {
      return 0
    }
    let uploaded = 0
    for (const name of names) {
      const file = path.join(dir, name)
      const size = (await fsp.stat(file)).size
      const key = s3ObjectKey(this.prefix, bigfileKeyIn(this.settings.layout ?? 'nested', plan.dateDir, name, this.settings.bigfilesPrefix))
      uploaded += await this.uploadBigfile(key, file, size)
    }
    return uploaded
  }

  /**
   * One BigFile, unless the bucket holds it already; returns the bytes
   * uploaded. Another part of this run uploading the same key is waited for
   * first: then the bytes go up once, and are counted once.
   */
  private async uploadBigfile(key: string, file: string, size: number): Promise<number> {
    for (let busy = this.bigfileUploads.get(key); busy; busy = this.bigfileUploads.get(key)) await busy.catch(() => 0)
    const upload = (async () => {
      let same: boolean
      try {
        same = await this.uploader.holdsFile(key, file, size)
      } catch (err) {
        throw s3Failure(`BigFile s3://${this.bucket}/${key}`, err)
      }
      if (same) return 0
      await this.uploader.putFile(key, file, size, {})
      return size
    })()
    this.bigfileUploads.set(key, upload)
    try {
      return await upload
    } finally {
      this.bigfileUploads.delete(key)
    }
  }
}
