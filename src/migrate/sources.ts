// The files rows point at: local paths or s3://bucket/key. Checking that one
// exists with the size the row claims (step 2), and deleting it (step 6).

import * as fs from 'node:fs/promises'
import { DeleteObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { s3ErrorKind } from '../storage/s3-errors'
import { isS3Url, parseS3Url } from '../storage/s3-url'

export type SourceRef = { kind: 'local'; path: string } | { kind: 's3'; bucket: string; key: string }

/** Parses a file_location; null when it is not one we can read. */
export function parseLocation(location: string): SourceRef | null {
  if (isS3Url(location)) {
    const url = parseS3Url(location)
    return url ? { kind: 's3', ...url } : null
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) || location.includes('\0')) return null
  return { kind: 'local', path: location }
}

/** What a source check found: its size, or why it cannot be used. */
export type SourceCheck = { ok: true; size: number } | { ok: false; reason: string }

/** Reads the size of a source without reading it. */
export async function checkSource(ref: SourceRef, s3: S3Client | undefined): Promise<SourceCheck> {
  if (ref.kind === 'local') {
    try {
      const st = await fs.stat(ref.path)
      if (!st.isFile()) return { ok: false, reason: `source ${ref.path} is not a regular file` }
      return { ok: true, size: st.size }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      return { ok: false, reason: code === 'ENOENT' ? `source ${ref.path} does not exist` : `source ${ref.path}: ${(err as Error).message}` }
    }
  }
  if (!s3) return { ok: false, reason: `source s3://${ref.bucket}/${ref.key}: S3 sources are disabled (packer.s3_source.enabled)` }
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: ref.bucket, Key: ref.key }))
    return { ok: true, size: Number(head.ContentLength ?? 0) }
  } catch (err) {
    const kind = s3ErrorKind(err)
    if (kind === 'missing' || kind === 'no-bucket') return { ok: false, reason: `source s3://${ref.bucket}/${ref.key} does not exist` }
    if (kind === 'forbidden') return { ok: false, reason: `source s3://${ref.bucket}/${ref.key}: access denied` }
    // Anything else (network, 5xx after the SDK's retries) is not the row's fault: the caller fails the cycle.
    throw err
  }
}

/** Deletes a source; one already gone counts as deleted (a rerun after a crash). */
export async function deleteSource(ref: SourceRef, s3: S3Client | undefined): Promise<void> {
  if (ref.kind === 'local') {
    try {
      await fs.unlink(ref.path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    return
  }
  if (!s3) throw new Error('S3 sources are disabled')
  await s3.send(new DeleteObjectCommand({ Bucket: ref.bucket, Key: ref.key }))
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}
