// The files a packer reads (a manifest's source_path, a migration row's
// file_location): a local path or an s3:// object. One check for both
// commands: the source exists, is a file, and has this size, without reading
// it. Local files are stat'ed by Rust on every core, all in one call (a stat
// takes a few microseconds: a promise each would cost more), S3 objects by a
// HEAD, a few at a time.

import * as fs from 'node:fs'
import { statSources } from '../native'
import type { S3Client } from '@aws-sdk/client-s3'
import { s3Sdk } from './s3-sdk'
import { mapLimit } from './map-limit'
import { noCredentials, s3ErrorKind, s3Status } from './s3-errors'
import { isS3Url, parseS3Url } from './s3-url'

export type SourceRef = { kind: 'local'; path: string } | { kind: 's3'; bucket: string; key: string }

/** A local path or `s3://bucket/key`; null when it is neither (another scheme, a malformed s3:// URL, a NUL). */
export function parseSourceRef(location: string): SourceRef | null {
  if (isS3Url(location)) {
    const url = parseS3Url(location)
    return url ? { kind: 's3', ...url } : null
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) || location.includes('\0')) return null
  return { kind: 'local', path: location }
}

/** How a source is named in a reason. */
export function sourceName(ref: SourceRef): string {
  return ref.kind === 'local' ? ref.path : `s3://${ref.bucket}/${ref.key}`
}

/**
 * What a check found: the size, or why the source cannot be used: `missing`,
 * `not-file`, `forbidden` (S3 403), `disabled` (an S3 source and no client),
 * `unreadable` (a local error other than absence). `reason` says it in words.
 */
export type SourceCheck = { ok: true; size: number; etag?: string } | { ok: false; why: 'missing' | 'not-file' | 'forbidden' | 'disabled' | 'unreadable'; reason: string }

function statLocal(path: string): SourceCheck {
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(path, { throwIfNoEntry: false })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOTDIR') return { ok: false, why: 'unreadable', reason: `source ${path}: ${(err as Error).message}` }
  }
  if (!st) return missing(path)
  if (!st.isFile()) return notFile(path)
  return { ok: true, size: st.size }
}

function missing(path: string): SourceCheck {
  return { ok: false, why: 'missing', reason: `source ${path} does not exist` }
}

function notFile(path: string): SourceCheck {
  return { ok: false, why: 'not-file', reason: `source ${path} is not a regular file` }
}

/** HEAD of an S3 source (its size, and its ETag to tell a later overwrite); a failure that is not the source's own (network, 5xx after the client's retries) is thrown. */
export async function headS3(ref: { bucket: string; key: string }, s3: S3Client | undefined): Promise<SourceCheck> {
  const name = `s3://${ref.bucket}/${ref.key}`
  if (!s3) return { ok: false, why: 'disabled', reason: `source ${name}: no S3 source client is configured` }
  try {
    const head = await s3.send(new (s3Sdk().HeadObjectCommand)({ Bucket: ref.bucket, Key: ref.key }))
    return { ok: true, size: Number(head.ContentLength ?? 0), ...(head.ETag ? { etag: head.ETag } : {}) }
  } catch (err) {
    const kind = s3ErrorKind(err)
    if (kind === 'no-credentials') throw noCredentials(err)
    if (kind === 'missing' || kind === 'no-bucket') return { ok: false, why: 'missing', reason: `source ${name} does not exist` }
    if (kind === 'forbidden') return { ok: false, why: 'forbidden', reason: `source ${name}: access denied` }
    // An answer about this key (a name the server will not take, such as `a//b` on MinIO): the source's own problem.
    if (kind === 'refused') return { ok: false, why: 'unreadable', reason: `source ${name}: refused by S3 (HTTP ${s3Status(err)})` }
    throw err
  }
}

/** What `statSources` says of a path, in words (a failure it does not name is looked at again, for its reason). */
export function localCheck(path: string, stat: number): SourceCheck {
  if (stat >= 0) return { ok: true, size: stat }
  if (stat === -1) return missing(path)
  if (stat === -2) return notFile(path)
  return statLocal(path)
}

/** Checks every source (results in order): local ones all at once, S3 ones `s3Concurrency` at a time. */
export async function checkSources(refs: readonly SourceRef[], s3: S3Client | undefined, s3Concurrency = 32): Promise<SourceCheck[]> {
  const out = new Array<SourceCheck>(refs.length)
  const remote: number[] = []
  const local: number[] = []
  for (let i = 0; i < refs.length; i++) (refs[i].kind === 's3' ? remote : local).push(i)
  if (local.length > 0) {
    const paths = local.map((i) => (refs[i] as { path: string }).path)
    const stats = await statSources(paths)
    local.forEach((i, k) => (out[i] = localCheck(paths[k], stats[k])))
  }
  await mapLimit(remote, s3Concurrency, async (i) => {
    out[i] = await headS3(refs[i] as { bucket: string; key: string }, s3)
  })
  return out
}
