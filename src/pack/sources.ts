// Where payloads come from: local paths (read by the Rust pack loop itself) and
// s3:// objects (fetched here with retries and backoff, counted in the
// des_s3_source_* metrics). Every source is checked before anything is written.

import * as fs from 'node:fs'
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { DesError } from '../errors'
import { sourceBytesDownloaded, sourceBytesDownloadedTotal, sourceReadSeconds, sourceReadsTotal } from '../metrics'
import type { PackFile } from '../native'
import { isTransientKind, s3ErrorKind } from '../storage/s3-errors'
import { mapLimit } from '../storage/map-limit'
import { parseS3Url } from '../storage/s3-url'
import { withContentType } from './content-type'
import { named, type PlannedInput } from './plan'

/**
 * How s3:// sources are read: with this client, whose retry strategy is the
 * one retry policy (`createS3Client`'s maxAttempts and retryDelayMs); a read
 * is not retried on top of it.
 */
export interface S3SourceOptions {
  client: S3Client
}

export { mapLimit }

/** Counts the retries the SDK made for one request (its `$metadata.attempts`). */
function countRetries(outcome: unknown): void {
  const attempts = (outcome as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ?? 1
  if (attempts > 1) sourceReadsTotal.inc({ status: 'retry' }, attempts - 1)
}

function s3Error(p: PlannedInput, what: string, err: unknown): DesError {
  const msg = err instanceof Error ? err.message || err.name : String(err)
  const kind = s3ErrorKind(err)
  if (kind === 'missing' || kind === 'no-bucket') return new DesError('DES_NOT_FOUND', `${named(p)}: source ${p.input.source} does not exist`, { cause: err })
  const code = isTransientKind(kind) ? 'DES_UNAVAILABLE' : 'DES_STORAGE'
  return new DesError(code, `${named(p)}: ${what} ${p.input.source}: ${msg}`, { cause: err })
}

/**
 * Checks every source before anything is written: local files exist, are
 * files and have the manifest's size; s3:// objects exist (HEAD) with that
 * size. Fills in `size` where the manifest gave none.
 */
export async function checkSources(items: PlannedInput[], s3?: S3SourceOptions): Promise<void> {
  const local: PlannedInput[] = []
  const remote: PlannedInput[] = []
  for (const p of items) (p.onS3 ? remote : local).push(p)
  // Local: stat on this thread in slices (a stat is a few microseconds; through
  // the thread pool each costs more in promise overhead), yielding in between.
  for (let i = 0; i < local.length; i += 512) {
    for (const p of local.slice(i, i + 512)) checkSize(p, statLocal(p))
    await new Promise((r) => setImmediate(r))
  }
  await mapLimit(remote, 32, async (p) => {
    const uri = parseS3Url(p.input.source)
    if (!uri) throw new DesError('DES_BAD_ARG', `${named(p)}: source ${p.input.source} is not s3://bucket/key`)
    if (!s3) throw new DesError('DES_CONFIG', `${named(p)}: source ${p.input.source} is on S3 but no S3 source client is configured`)
    try {
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: uri.bucket, Key: uri.key }))
      countRetries(head)
      checkSize(p, head.ContentLength ?? 0)
    } catch (err) {
      countRetries(err)
      throw err instanceof DesError ? err : s3Error(p, 'cannot read source', err)
    }
  })
}

function statLocal(p: PlannedInput): number {
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(p.input.source, { throwIfNoEntry: false })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOTDIR') throw new DesError('DES_IO', `${named(p)}: cannot read source ${p.input.source}: ${(err as Error).message}`)
  }
  if (!st) throw new DesError('DES_NOT_FOUND', `${named(p)}: source ${p.input.source} does not exist`)
  if (!st.isFile()) throw new DesError('DES_BAD_ARG', `${named(p)}: source ${p.input.source} is not a regular file`)
  return st.size
}

function checkSize(p: PlannedInput, actual: number): void {
  if (p.input.sizeBytes !== undefined && p.input.sizeBytes !== actual) {
    throw new DesError('DES_BAD_ARG', `${named(p)}: source ${p.input.source} is ${actual} bytes, the manifest says ${p.input.sizeBytes}`)
  }
  p.size = actual
}

/** Downloads one s3:// source (retries, backoff, metrics); its size must match. */
export async function readS3Source(p: PlannedInput, s3: S3SourceOptions): Promise<Buffer> {
  const uri = parseS3Url(p.input.source)!
  const started = process.hrtime.bigint()
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9
  try {
    const res = await s3.client.send(new GetObjectCommand({ Bucket: uri.bucket, Key: uri.key })).catch((err: unknown) => {
      countRetries(err)
      throw err
    })
    countRetries(res)
    const data = Buffer.from(await res.Body!.transformToByteArray())
    sourceBytesDownloaded.inc(data.length)
    sourceBytesDownloadedTotal.inc(data.length)
    if (data.length !== p.size) {
      throw new DesError('DES_BAD_ARG', `${named(p)}: source ${p.input.source} is now ${data.length} bytes, it was ${p.size} when checked`)
    }
    sourceReadsTotal.inc({ status: 'success' })
    sourceReadSeconds.observe({ status: 'success' }, seconds())
    return data
  } catch (err) {
    sourceReadsTotal.inc({ status: 'error' })
    sourceReadSeconds.observe({ status: 'error' }, seconds())
    throw err instanceof DesError ? err : s3Error(p, 'cannot read source', err)
  }
}

function metaText(p: PlannedInput): string | undefined {
  const meta = withContentType(p.input.meta, p.input.source, p.input.uid)
  return meta && Object.keys(meta).length > 0 ? JSON.stringify(meta) : undefined
}

/**
 * The `addFiles` form of a chunk of inputs: local files by path (the Rust loop
 * reads them on every core), s3:// sources fetched here.
 */
export async function loadChunk(items: PlannedInput[], s3?: S3SourceOptions): Promise<PackFile[]> {
  return mapLimit(items, 8, async (p) => {
    if (p.load) return p.load()
    const meta = metaText(p)
    if (p.onS3) {
      if (!s3) throw new DesError('DES_CONFIG', `${named(p)}: no S3 source client is configured`)
      return { uid: p.input.uid, data: await readS3Source(p, s3), meta }
    }
    return { uid: p.input.uid, path: p.input.source, size: p.size, meta }
  })
}

/** Splits inputs into chunks of at most `maxBytes` (of source size) / `maxFiles`. */
export function chunks(items: PlannedInput[], maxBytes: number, maxFiles: number): PlannedInput[][] {
  const out: PlannedInput[][] = []
  let cur: PlannedInput[] = []
  let bytes = 0
  for (const p of items) {
    if (cur.length > 0 && (bytes + p.size > maxBytes || cur.length >= maxFiles)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(p)
    bytes += p.size
  }
  if (cur.length > 0) out.push(cur)
  return out
}

/** Chunk sizes: local chunks are cheap (paths only); s3 chunks are held in memory. */
export function chunkLimits(items: PlannedInput[]): { maxBytes: number; maxFiles: number } {
  const anyS3 = items.some((p) => p.onS3 || p.load)
  return anyS3 ? { maxBytes: 16 << 20, maxFiles: 256 } : { maxBytes: 64 << 20, maxFiles: 4096 }
}
