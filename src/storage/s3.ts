// Shards on S3 (or any S3-compatible server): suffix-range GETs for tails,
// range GETs for payloads, one streamed GET per BigFile. Every request is
// counted in des_s3_range_calls_total{backend,type}. No LIST, no HEAD (but
// for `list`, which only the store-wide verify, convert and a start-up check use).

import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, type _Object, type GetObjectCommandOutput, type ListObjectsV2CommandOutput, type S3Client } from '@aws-sdk/client-s3'
import { PassThrough, Readable } from 'node:stream'
import type { S3Settings } from '../config/env'
import { DesError } from '../errors'
import { backendLabel, s3RangeCallsTotal } from '../metrics'
import { bodyIdleMsOf } from './s3-client'
import { s3ObjectKey } from './s3-key'
import { noCredentials, s3ErrorKind, s3ErrorText, s3Status } from './s3-errors'
import { rangeFromContentRange, totalFromContentRange } from './s3-url'
import { EtagMismatchError, type ByteRange, type ByteSource, type ListedObject, type ObjectStream, type ObjectTail, type ReadType, type StreamOptions } from './source'

/** A listed object, its key in full. */
export type ListedS3Object = _Object & { Key: string }

/**
 * The objects whose keys start with `prefix` (ListObjectsV2, 1,000 keys a
 * page, bytewise order; with `delimiter`, those not below a further one).
 * A server that cleans request paths (MinIO) stores `/archive/x` as
 * `archive/x` and lists nothing under `/archive/`: when a prefix with leading
 * slashes lists nothing, the listing without them is taken, keys given back
 * their slashes, once its first object answers a HEAD at the slashed key. On
 * AWS that HEAD finds nothing (no key starts with `/archive/`), so another
 * store at `archive/` is never taken for this one.
 */
export async function* listUnder(client: S3Client, bucket: string, prefix: string, delimiter?: string): AsyncIterable<ListedS3Object> {
  let listedAny = false
  for await (const page of listPages(client, bucket, prefix, delimiter)) {
    listedAny ||= (page.Contents ?? []).length > 0 || (page.CommonPrefixes ?? []).length > 0
    for (const o of page.Contents ?? []) if (o.Key?.startsWith(prefix)) yield o as ListedS3Object
  }
  const slashes = /^\/+/.exec(prefix)?.[0]
  if (listedAny || !slashes) return
  const bare = prefix.slice(slashes.length)
  let cleansPaths: boolean | undefined
  for await (const page of listPages(client, bucket, bare, delimiter)) {
    for (const o of page.Contents ?? []) {
      if (!o.Key?.startsWith(bare)) continue
      cleansPaths ??= await objectAt(client, bucket, slashes + o.Key)
      if (!cleansPaths) return
      yield { ...o, Key: slashes + o.Key }
    }
  }
}

async function* listPages(client: S3Client, bucket: string, prefix: string, delimiter?: string): AsyncIterable<ListObjectsV2CommandOutput> {
  let token: string | undefined
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, Delimiter: delimiter, ContinuationToken: token }))
    yield page
    token = page.IsTruncated ? page.NextContinuationToken : undefined
  } while (token)
}

/** True when a HEAD of `key` finds an object, false when it finds none (or may not look). */
async function objectAt(client: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
    return true
  } catch (err) {
    const kind = s3ErrorKind(err)
    if (kind === 'missing' || kind === 'forbidden') return false
    throw err
  }
}

/** Turns an SDK error into ours: 404 → DES_NOT_FOUND, 412 → EtagMismatchError, unreachable or busy → DES_UNAVAILABLE, else DES_STORAGE. */
export function s3Error(err: unknown, bucket: string, key: string): DesError {
  if (err instanceof DesError) return err
  const where = `s3://${bucket}/${key}`
  switch (s3ErrorKind(err)) {
    case 'no-credentials':
      return noCredentials(err)
    case 'no-bucket':
      return new DesError('DES_STORAGE', `bucket ${bucket} does not exist`, { cause: err })
    case 'missing':
      return new DesError('DES_NOT_FOUND', `no object ${where}`, { cause: err })
    case 'conflict':
      return new EtagMismatchError(where)
    case 'unreachable':
    case 'local-io':
    case 'busy':
      return new DesError('DES_UNAVAILABLE', `storage unreachable reading ${where}: ${s3ErrorText(err)}`, { cause: err })
    default:
      return new DesError('DES_STORAGE', `storage error reading ${where}: ${s3Status(err)} ${(err as Error)?.name ?? ''}: ${(err as Error)?.message ?? ''}`.trim(), { cause: err })
  }
}

/**
 * A GET's body, watched: silent for `idleMs` while its reader waits for
 * bytes (S3 hung or paused, a network dropping packets), it fails as
 * unreachable. The SDK's requestTimeout ends with the response's headers,
 * and an idle timeout on the socket would also cut a slow client's download,
 * whose reads wait on the client, not on S3. A failure mid-way is
 * `toOurs(err)`, as a failed request is: a BigFile cut short is logged and
 * counted as the storage failure it is, not as an internal error.
 */
function watchedBody(body: Readable, idleMs: number, toOurs: (err: unknown) => DesError): Readable {
  const out = new PassThrough()
  let over = false
  let silence: NodeJS.Timeout | undefined
  const waitForS3 = () => {
    if (over) return
    if (silence) silence.refresh()
    else silence = setTimeout(() => body.destroy(Object.assign(new Error(`timed out: no byte of the body for ${idleMs} ms`), { name: 'TimeoutError' })), idleMs)
  }
  const waitForReader = () => {
    clearTimeout(silence)
    silence = undefined
  }
  const finish = () => {
    over = true
    waitForReader()
  }
  body.on('data', (chunk: Buffer) => {
    if (out.write(chunk)) return waitForS3()
    // The reader is behind: S3 is not waited on until it takes more.
    waitForReader()
    body.pause()
  })
  out.on('drain', () => {
    waitForS3()
    body.resume()
  })
  body.once('end', () => {
    finish()
    out.end()
  })
  body.once('error', (err) => {
    finish()
    out.destroy(toOurs(err))
  })
  // A reader that stops early (a client gone) lets the object's connection go.
  out.once('close', () => {
    finish()
    body.destroy()
  })
  waitForS3()
  return out
}

/** The first `length` bytes of `body`; the object's connection goes once they are read (or the reader leaves). */
function firstBytes(body: Readable, length: number): Readable {
  const cut = Readable.from(
    (async function* () {
      let left = length
      if (left === 0) return
      for await (const chunk of body as AsyncIterable<Buffer>) {
        const part = chunk.length > left ? chunk.subarray(0, left) : chunk
        left -= part.length
        yield part
        if (left === 0) break
      }
    })(),
    { objectMode: false },
  )
  // Destroyed before it was read (a HEAD's probe), the generator never ran: the object's connection goes here.
  cut.once('close', () => body.destroy())
  return cut
}

async function bytesOf(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}

export class S3Source implements ByteSource {
  readonly id: string
  readonly backend: string
  /** Where the store's keys live: its bucket and key prefix ('' or ending in '/'). */
  readonly prefix: string
  readonly bucket: string
  private readonly counters: Record<ReadType, { inc(): void }>
  /** How long a body may be silent while it is waited for. */
  private readonly bodyIdleMs: number

  constructor(
    private readonly client: S3Client,
    settings: Pick<S3Settings, 'bucket' | 'prefix'>,
    backend = 's3',
  ) {
    this.bucket = settings.bucket
    this.prefix = settings.prefix
    this.backend = backend
    this.id = `s3:${settings.bucket}/${settings.prefix}`
    this.bodyIdleMs = bodyIdleMsOf(client)
    // A zone's source counts as `s3`, as the reference's zone retrievers do.
    const label = backendLabel(backend)
    this.counters = {
      tail: s3RangeCallsTotal.labels(label, 'tail'),
      index: s3RangeCallsTotal.labels(label, 'index'),
      payload: s3RangeCallsTotal.labels(label, 'payload'),
      bigfile: s3RangeCallsTotal.labels(label, 'bigfile'),
      meta: { inc: () => {} },
    }
  }

  /** The object key of a key in the store. */
  private keyOf(key: string): string {
    return s3ObjectKey(this.prefix, key)
  }

  /** The object's answer, its body watched (see watchedBody). */
  private async get(key: string, type: ReadType, range: string | undefined, etag?: string): Promise<GetObjectCommandOutput & { body: Readable }> {
    this.counters[type].inc()
    let out: GetObjectCommandOutput
    try {
      out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key), Range: range, IfMatch: etag && !etag.startsWith('size:') ? etag : undefined }))
    } catch (err) {
      if ((err as { name?: string }).name === 'InvalidRange' && type === 'tail') {
        throw new DesError('DES_CORRUPT', `s3://${this.bucket}/${this.keyOf(key)} is empty, not a shard`)
      }
      throw s3Error(err, this.bucket, this.keyOf(key))
    }
    return { ...out, body: watchedBody(out.Body as Readable, this.bodyIdleMs, (err) => s3Error(err, this.bucket, this.keyOf(key))) }
  }

  async getTail(key: string, n: number): Promise<ObjectTail> {
    const out = await this.get(key, 'tail', `bytes=-${n}`)
    try {
      const bytes = await bytesOf(out.body)
      const objectSize = totalFromContentRange(out.ContentRange) ?? bytes.length
      // No ETag (some S3-compatible servers): the size tells changes apart, and no If-Match is sent.
      return { bytes, objectSize, etag: out.ETag ?? `size:${objectSize}` }
    } catch (err) {
      throw s3Error(err, this.bucket, this.keyOf(key))
    }
  }

  async getRange(key: string, offset: number, length: number, type: ReadType, etag?: string): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0)
    const out = await this.get(key, type, `bytes=${offset}-${offset + length - 1}`, etag)
    let bytes: Buffer
    try {
      bytes = await bytesOf(out.body)
    } catch (err) {
      throw s3Error(err, this.bucket, this.keyOf(key))
    }
    if (bytes.length !== length) {
      throw new DesError('DES_CORRUPT', `s3://${this.bucket}/${this.keyOf(key)}: asked for ${length} bytes at ${offset}, got ${bytes.length}`)
    }
    return bytes
  }

  async stream(key: string, range?: ByteRange, opts: StreamOptions = {}): Promise<ObjectStream> {
    const out = await this.get(key, opts.type ?? 'bigfile', range ? `bytes=${range.start}-${range.end}` : undefined, opts.etag)
    const objectSize = totalFromContentRange(out.ContentRange) ?? out.ContentLength ?? 0
    if (range) {
      // A server (or a proxy) that ignores Range answers 200 with the whole object: its first
      // bytes must never go out as the range's. An end short of the asked one is a smaller
      // object, which the caller's size check refuses.
      const got = rangeFromContentRange(out.ContentRange)
      const end = Math.min(range.end, objectSize - 1)
      // Asked from its first byte, the whole object starts with the range (a HEAD's 1-byte probe): the rest is not read.
      if (out.ContentRange === undefined && range.start === 0) return { body: firstBytes(out.body, end + 1), objectSize, etag: out.ETag }
      if (got === undefined || got.start !== range.start || got.end !== end) {
        out.body.destroy()
        throw new DesError('DES_STORAGE', `s3://${this.bucket}/${this.keyOf(key)}: asked for bytes ${range.start}-${range.end}, answered ${out.ContentRange ?? 'the whole object (Range ignored)'}`)
      }
    }
    return { body: out.body, objectSize, etag: out.ETag }
  }

  /** Every object under the prefix (ListObjectsV2, 1,000 keys a page, in bytewise key order). */
  async *list(): AsyncIterable<ListedObject> {
    try {
      for await (const o of listUnder(this.client, this.bucket, this.prefix)) {
        yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 }
      }
    } catch (err) {
      throw s3Error(err, this.bucket, this.prefix)
    }
  }

  /** Those at the root among the first `limit` keys listed: one page, however many the prefix holds. */
  async rootKeys(limit: number): Promise<string[]> {
    // With a delimiter the date folders of a nested store come back as
    // prefixes, not objects: the keys at the root, past however many nested ones.
    const keys: string[] = []
    try {
      for await (const o of listUnder(this.client, this.bucket, this.prefix, '/')) {
        keys.push(o.Key.slice(this.prefix.length))
        if (keys.length >= limit) break
      }
    } catch (err) {
      throw s3Error(err, this.bucket, this.prefix)
    }
    return keys
  }

  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }))
    } catch (err) {
      const e = s3Error(err, this.bucket, '')
      throw e.code === 'DES_NOT_FOUND' ? new DesError('DES_STORAGE', `bucket ${this.bucket} does not exist`) : e
    }
  }
}
