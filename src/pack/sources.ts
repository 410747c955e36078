// Where payloads come from: local paths (read by the Rust pack loop itself) and
// s3:// objects (fetched here with retries and backoff, counted in the
// des_s3_source_* metrics). Every source is checked before anything is written.

import { DesError } from '../errors'
import type { PackFile } from '../native'
import { isTransientKind, noCredentials, s3ErrorKind } from '../storage/s3-errors'
import { mapLimit } from '../storage/map-limit'
import { s3Sdk } from '../storage/s3-sdk'
import { parseS3Url } from '../storage/s3-url'
import { checkSources as checkSourceRefs, localCheck, parseSourceRef, type SourceCheck, type SourceRef } from '../storage/source-check'
import { metaText as metaTextOf } from './content-type'
import type { S3SourceOptions } from './types'
import { named, type PlannedInput } from './plan'


export { mapLimit }
export type { S3SourceOptions }

/** The metrics, loaded with the first S3 source read: prom-client is ~30 ms of a local run's start-up. */
function metrics(): typeof import('../metrics') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('../metrics') as typeof import('../metrics')
}

/** Counts the retries the SDK made for one request (its `$metadata.attempts`). */
function countRetries(outcome: unknown): void {
  const attempts = (outcome as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ?? 1
  if (attempts > 1) metrics().sourceReadsTotal.inc({ status: 'retry' }, attempts - 1)
}

function s3Error(p: PlannedInput, what: string, err: unknown): DesError {
  const msg = err instanceof Error ? err.message || err.name : String(err)
  const kind = s3ErrorKind(err)
  if (kind === 'no-credentials') return noCredentials(err)
  const uid = p.input.uid
  if (kind === 'missing' || kind === 'no-bucket') return new DesError('DES_NOT_FOUND', `${named(p)}: source ${p.input.source} does not exist`, { cause: err, uid })
  // Read If-Match the ETag the caller checked (des migrate): other bytes are there now.
  if (kind === 'conflict' && p.input.etag !== undefined) {
    return new DesError('DES_SOURCE_CHANGED', `${named(p)}: source ${p.input.source} was overwritten after it was checked (its ETag is no longer ${p.input.etag})`, { cause: err, uid })
  }
  const code = isTransientKind(kind) ? 'DES_UNAVAILABLE' : 'DES_STORAGE'
  return new DesError(code, `${named(p)}: ${what} ${p.input.source}: ${msg}`, { cause: err, uid })
}

/**
 * Checks every source before anything is written (storage/source-check.ts,
 * as des migrate does): local files exist, are files and have the manifest's
 * size; s3:// objects exist (HEAD) with that size. Fills in `size` where the
 * manifest gave none. Local sources are all checked before any S3 one.
 * `stated` holds what `statSources` already said of some local sources
 * (the planner asks while the manifest is still being read).
 */
export async function checkSources(items: PlannedInput[], s3?: S3SourceOptions, stated?: ReadonlyMap<PlannedInput, number>): Promise<void> {
  const local: PlannedInput[] = []
  const remote: Array<{ p: PlannedInput; ref: SourceRef }> = []
  for (const p of items) {
    if (!p.onS3) {
      local.push(p)
      continue
    }
    const ref = parseSourceRef(p.input.source)
    if (!ref || ref.kind !== 's3') throw new DesError('DES_BAD_ARG', `${named(p)}: source ${p.input.source} is not s3://bucket/key`)
    remote.push({ p, ref })
  }
  const unstated = stated ? local.filter((p) => !stated.has(p)) : local
  const checks = await checkSourceRefs(unstated.map((p) => ({ kind: 'local' as const, path: p.input.source })), undefined)
  // In manifest order, so the first bad source is the one reported.
  let next = 0
  for (const p of local) {
    const stat = stated?.get(p)
    checkSize(p, checked(p, stat !== undefined ? localCheck(p.input.source, stat) : checks[next++]))
  }
  if (remote.length === 0) return
  if (!s3) throw new DesError('DES_CONFIG', `${named(remote[0].p)}: source ${remote[0].p.input.source} is on S3 but no S3 source client is configured`)
  await mapLimit(remote, 32, async ({ p, ref }) => {
    let check: SourceCheck
    try {
      check = (await checkSourceRefs([ref], s3.client))[0]
    } catch (err) {
      throw err instanceof DesError ? err : s3Error(p, 'cannot read source', err)
    }
    checkSize(p, checked(p, check))
  })
}

/** The size a check found, or the error it is for this input. */
function checked(p: PlannedInput, c: SourceCheck): number {
  if (c.ok) return c.size
  const where = `${named(p)}: source ${p.input.source}`
  switch (c.why) {
    case 'missing':
      return fail('DES_NOT_FOUND', `${where} does not exist`)
    case 'not-file':
      return fail('DES_BAD_ARG', `${where} is not a regular file`)
    case 'unreadable':
      return fail('DES_IO', `${named(p)}: cannot read ${c.reason}`)
    case 'forbidden':
      return fail('DES_STORAGE', `${named(p)}: cannot read source ${p.input.source}: access denied`)
    case 'disabled':
      return fail('DES_CONFIG', `${where} is on S3 but no S3 source client is configured`)
  }
}

function fail(code: string, message: string): never {
  throw new DesError(code, message)
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
    const etag = p.input.etag
    const res = await s3.client.send(new (s3Sdk().GetObjectCommand)({ Bucket: uri.bucket, Key: uri.key, ...(etag !== undefined ? { IfMatch: etag } : {}) })).catch((err: unknown) => {
      countRetries(err)
      throw err
    })
    countRetries(res)
    const data = Buffer.from(await res.Body!.transformToByteArray())
    metrics().sourceBytesDownloaded.inc(data.length)
    metrics().sourceBytesDownloadedTotal.inc(data.length)
    if (data.length !== p.size) {
      throw new DesError('DES_SOURCE_CHANGED', `${named(p)}: source ${p.input.source} is now ${data.length} bytes, it was ${p.size} when checked`, { uid: p.input.uid })
    }
    metrics().sourceReadsTotal.inc({ status: 'success' })
    metrics().sourceReadSeconds.observe({ status: 'success' }, seconds())
    return data
  } catch (err) {
    metrics().sourceReadsTotal.inc({ status: 'error' })
    metrics().sourceReadSeconds.observe({ status: 'error' }, seconds())
    throw err instanceof DesError ? err : s3Error(p, 'cannot read source', err)
  }
}

function metaText(p: PlannedInput): string | undefined {
  return metaTextOf(p.input.meta, p.input.source, p.input.uid)
}

/**
 * The `addFiles` form of a chunk of inputs: local files by path (the Rust loop
 * reads them on every core), s3:// sources fetched here.
 */
export async function loadChunk(items: PlannedInput[], s3?: S3SourceOptions): Promise<PackFile[]> {
  // Only local files: nothing to wait for (a promise per file would cost more than the rest of its way here).
  if (items.every(isLocal)) return items.map(localFile)
  return mapLimit(items, 8, async (p) => {
    if (p.load) return p.load()
    if (!p.onS3) return localFile(p)
    if (!s3) throw new DesError('DES_CONFIG', `${named(p)}: no S3 source client is configured`)
    return { uid: p.input.uid, data: await readS3Source(p, s3), meta: metaText(p) }
  })
}

/** A local file, which the Rust pack loop reads itself (not an s3:// source, nor bytes a caller loads). */
export function isLocal(p: PlannedInput): boolean {
  return !p.onS3 && !p.load
}

function localFile(p: PlannedInput): PackFile {
  return { uid: p.input.uid, path: p.input.source, size: p.size, meta: metaText(p) }
}

/** Local inputs as the addon's batch call takes them: parallel arrays, built in one pass (no object per file). */
export function localArrays(items: PlannedInput[]): { uids: string[]; paths: string[]; sizes: number[]; metas?: Array<string | null> } {
  const n = items.length
  const uids = new Array<string>(n)
  const paths = new Array<string>(n)
  const sizes = new Array<number>(n)
  const metas = new Array<string | null>(n)
  let anyMeta = false
  for (let i = 0; i < n; i++) {
    const p = items[i]
    uids[i] = p.input.uid
    paths[i] = p.input.source
    sizes[i] = p.size
    const meta = metaText(p)
    metas[i] = meta ?? null
    if (meta !== undefined) anyMeta = true
  }
  return anyMeta ? { uids, paths, sizes, metas } : { uids, paths, sizes }
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
  const anyS3 = !items.every(isLocal)
  return anyS3 ? { maxBytes: 16 << 20, maxFiles: 256 } : { maxBytes: 64 << 20, maxFiles: 4096 }
}
