// The files rows point at: local paths or s3://bucket/key. Checking that one
// exists with the size the row claims (step 2, the check des pack makes,
// storage/source-check.ts), and deleting it (step 6).

import { constants as fsConstants, statSync, type BigIntStats } from 'node:fs'
import * as fs from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { DesError } from '../errors'
import { mapLimit } from '../storage/map-limit'
import { checkSources, headS3, parseSourceRef, sourceName, type SourceRef } from '../storage/source-check'

export type { SourceRef }
export { mapLimit }

/** Parses a file_location; null when it is not one we can read. */
export const parseLocation = parseSourceRef

/** Step 2's check of many sources (exists, a file, its size), in order; the reason words a row's report. */
export async function checkLocations(refs: readonly SourceRef[], s3: S3Client | undefined): Promise<Array<{ ok: true; size: number; etag?: string } | { ok: false; reason: string }>> {
  const checks = await checkSources(refs, s3, 64)
  return checks.map((c, i) => (c.ok || c.why !== 'disabled' ? c : { ok: false, reason: `source ${sourceName(refs[i])}: S3 sources are disabled (packer.s3_source.enabled)` }))
}

/**
 * Opening a local source never waits: a FIFO put where the checked file was
 * would block the open itself, and the cycle with it (O_NONBLOCK does not
 * change how a regular file reads). Not on Windows, which has no FIFOs there.
 */
const OPEN_WITHOUT_WAITING = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0)

/** A source's bytes, as a stream (local file or S3 object); a local one must still be a regular file. */
export async function openLocation(ref: SourceRef, s3: S3Client | undefined): Promise<Readable> {
  if (ref.kind === 'local') {
    const handle = await fs.open(ref.path, OPEN_WITHOUT_WAITING)
    try {
      if (!(await handle.stat()).isFile()) throw new DesError('DES_SOURCE_CHANGED', 'it is no longer a regular file')
    } catch (err) {
      await handle.close()
      throw err
    }
    return handle.createReadStream()
  }
  if (!s3) throw new Error('S3 sources are disabled')
  const res = await s3.send(new GetObjectCommand({ Bucket: ref.bucket, Key: ref.key }))
  return res.Body as Readable
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

/** What a source was when it was checked, before it was read and stored. */
export interface ReadAs {
  size: number
  /** An S3 source's ETag at the check. */
  etag?: string
  /** A local source's identity at the check (localFileId). */
  fileId?: string
  /** A local source's mtime and ctime at the check (localFileSeen). */
  fileTimes?: string
}

/**
 * What step 2 saw of a local source: its identity and (`fileTimes`) its
 * mtime and ctime in nanoseconds; none when it cannot be stat'ed.
 */
export function localFileSeen(path: string): { fileId?: string; fileTimes?: string } {
  try {
    const st = statSync(path, { bigint: true, throwIfNoEntry: false })
    return st === undefined ? {} : { fileId: fileIdOf(st), fileTimes: fileTimesOf(st) }
  } catch {
    return {}
  }
}

/** mtime and ctime, exact: any write, truncation or times set since changes one (ctime is the kernel's, never set back). */
function fileTimesOf(st: BigIntStats): string {
  return `${st.mtimeNs}:${st.ctimeNs}`
}

function fileIdOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}`
}

/**
 * A local file's identity (device and inode, exact), to tell it from another
 * file put at its path later, older times and all (its folder renamed away and
 * another put in its place); undefined when it cannot be stat'ed.
 */
export function localFileId(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true, throwIfNoEntry: false })
    return st === undefined ? undefined : fileIdOf(st)
  } catch {
    return undefined
  }
}

/**
 * Why a source may no longer hold the bytes stored from it: another size, or
 * changed after it was checked. A local one: another file than at the check
 * (`was.fileId`; none recorded counts as another), or written, or its times set, after
 * `since` (ms since the epoch, when the cycle began). An S3 one: another ETag
 * than at the check (an overwrite; the server's clock is not ours to compare).
 * Undefined when it looks as it was read, or is gone.
 */
export async function changedSince(ref: SourceRef, was: ReadAs, since: number, s3: S3Client | undefined): Promise<string | undefined> {
  if (ref.kind === 's3') return s3ChangedSince(ref, was, s3)
  const size = was.size
  const st = await fs.stat(ref.path, { bigint: true }).catch(() => undefined)
  if (st === undefined) return undefined
  if (Number(st.size) !== size) return `it is now ${st.size} bytes, ${size} were stored`
  // Its ctime too: a copy that keeps its origin's times (cp -p, rsync -a) sets mtime back, never ctime.
  const changedMs = Math.max(Number(st.mtimeMs), Number(st.ctimeMs))
  // Whole milliseconds, as Date.now() gives the start: a file written in its very millisecond is not after it.
  if (Math.floor(changedMs) > since) return `it was changed at ${new Date(changedMs).toISOString()}, after the cycle began`
  // Times alone do not tell a file moved here whole (its folder swapped for another holding the same name): it keeps its own.
  if (was.fileId === undefined || fileIdOf(st) !== was.fileId) return 'it is another file than the one checked and read (replaced, or a folder on its path was)'
  // Its times against those of the check, on the file system's own clock: a file server whose clock is
  // behind ours (NFS) dates a rewrite before the cycle began, and the comparison above misses it.
  if (was.fileTimes !== undefined && fileTimesOf(st) !== was.fileTimes) return 'it was changed after it was checked (its mtime or ctime is not the one seen then)'
  return undefined
}

async function s3ChangedSince(ref: { bucket: string; key: string }, was: ReadAs, s3: S3Client | undefined): Promise<string | undefined> {
  // The same HEAD as step 2's check, its failures worded the same.
  const now = await headS3(ref, s3)
  if (!now.ok) return now.why === 'missing' ? undefined : now.reason
  if (now.size !== was.size) return `it is now ${now.size} bytes, ${was.size} were stored`
  // No ETag at the check (a server that gives none): nothing tells an overwrite of the same size; it is not deleted.
  if (was.etag === undefined || now.etag === undefined) return 'S3 gave no ETag to tell whether it was overwritten after it was read'
  if (now.etag !== was.etag) return `it was overwritten after it was read (ETag ${now.etag}, was ${was.etag})`
  return undefined
}
