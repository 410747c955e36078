// The files a packer reads (a manifest's source_path, a migration row's
// file_location): a local path or an s3:// object. One check for both
// commands: the source exists, is a file, and has this size, without reading
// it. Local files are stat'ed on this thread in slices (a stat takes a few
// microseconds; through the thread pool each costs more in promise overhead),
// S3 objects by a HEAD, a few at a time.

import * as fs from 'node:fs'
import type { S3Client } from '@aws-sdk/client-s3'
import { s3Sdk } from './s3-sdk'
import { mapLimit } from './map-limit'
import { s3ErrorKind } from './s3-errors'
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
export type SourceCheck = { ok: true; size: number } | { ok: false; why: 'missing' | 'not-file' | 'forbidden' | 'disabled' | 'unreadable'; reason: string }

function statLocal(path: string): SourceCheck {
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(path, { throwIfNoEntry: false })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOTDIR') return { ok: false, why: 'unreadable', reason: `source ${path}: ${(err as Error).message}` }
  }
  if (!st) return { ok: false, why: 'missing', reason: `source ${path} does not exist` }
  if (!st.isFile()) return { ok: false, why: 'not-file', reason: `source ${path} is not a regular file` }
  return { ok: true, size: st.size }
}

/** HEAD of an S3 source; a failure that is not the source's own (network, 5xx after the client's retries) is thrown. */
async function headS3(ref: { bucket: string; key: string }, s3: S3Client | undefined): Promise<SourceCheck> {
  const name = `s3://${ref.bucket}/${ref.key}`
  if (!s3) return { ok: false, why: 'disabled', reason: `source ${name}: no S3 source client is configured` }
  try {
    const head = await s3.send(new (s3Sdk().HeadObjectCommand)({ Bucket: ref.bucket, Key: ref.key }))
    return { ok: true, size: Number(head.ContentLength ?? 0) }
  } catch (err) {
    const kind = s3ErrorKind(err)
    if (kind === 'missing' || kind === 'no-bucket') return { ok: false, why: 'missing', reason: `source ${name} does not exist` }
    if (kind === 'forbidden') return { ok: false, why: 'forbidden', reason: `source ${name}: access denied` }
    throw err
  }
}

/** Checks every source (results in order): local ones 512 at a time between event-loop turns, S3 ones `s3Concurrency` at a time. */
export async function checkSources(refs: readonly SourceRef[], s3: S3Client | undefined, s3Concurrency = 32): Promise<SourceCheck[]> {
  const out = new Array<SourceCheck>(refs.length)
  const remote: number[] = []
  let sinceYield = 0
  for (let i = 0; i < refs.length; i++) {
    const ref = refs[i]
    if (ref.kind === 's3') {
      remote.push(i)
      continue
    }
    out[i] = statLocal(ref.path)
    if (++sinceYield === 512) {
      sinceYield = 0
      await new Promise((r) => setImmediate(r))
    }
  }
  await mapLimit(remote, s3Concurrency, async (i) => {
    out[i] = await headS3(refs[i] as { bucket: string; key: string }, s3)
  })
  return out
}
