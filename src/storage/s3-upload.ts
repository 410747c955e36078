// Writing objects to S3: one PutObject or a multipart upload, a new object
// made of an old one's first bytes (copied server-side with UploadPartCopy
// when they are at least 5 MiB) and a local file, every write completed only
// under a condition (`If-Match: <ETag>` of the object it replaces,
// `If-None-Match: *` for a new key). What to write, and what to do when the
// condition fails, is the caller's (src/pack/s3-target.ts).

import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import { DesError } from '../errors'
import { Budget } from '../budget'
import { mapLimit } from './map-limit'
import { s3ErrorKind } from './s3-errors'
import { keyReached } from './s3-key'
import { totalFromContentRange } from './s3-url'

const MiB = 1024 * 1024
/** S3's smallest part (all but the last). */
const MIN_PART = 5 * MiB
const PART_SIZE = 16 * MiB
/** Objects up to this size go up in one PutObject. */
const SINGLE_PUT_MAX = 16 * MiB
/** S3's largest part, also for UploadPartCopy. */
const MAX_PART = 5 * 1024 * MiB
const MAX_PARTS = 10_000

/** Conditions on the final write. */
export type WriteCondition = { IfMatch: string } | { IfNoneMatch: '*' } | Record<string, never>

function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`
}

/** The server refuses an object name it would clean in a request path (MinIO: a leading slash in a copy source). */
function refusesSlashedName(err: unknown): boolean {
  return (err as { name?: string } | undefined)?.name === 'XMinioInvalidObjectName'
}

/** Reads `length` bytes at `offset` of a file. */
async function readFileRange(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(length)
    let got = 0
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got)
      if (bytesRead === 0) throw new DesError('DES_IO', `${file} ended at ${offset + got}, expected ${offset + length} bytes`)
      got += bytesRead
    }
    return buf
  } finally {
    await fh.close()
  }
}

/** One part of a multipart upload: a server-side copy or bytes we send. */
type UploadPiece = { copy: { start: number; end: number } } | { length: number; read: () => Promise<Buffer> }

/**
 * Bytes of upload bodies held in memory at once by every uploader of the
 * process: a packer writes many keys at once, each a PUT body or three
 * multipart pieces of 16 MiB, and this, not the number of keys, bounds them.
 */
export const UPLOAD_BODY_BYTES = 256 * MiB
const bodies = new Budget(UPLOAD_BODY_BYTES)

/** Holds `bytes` of the body budget while `work` runs. */
async function holding<T>(bytes: number, work: () => Promise<T>): Promise<T> {
  const release = await bodies.take(bytes)
  try {
    return await work()
  } finally {
    release()
  }
}

/** Multipart uploads under way in this process (by upload id), for abortOpenUploads. */
const openUploads = new Map<string, { client: S3Client; bucket: string; key: string }>()
/** Set by abortOpenUploads: no upload is started or completed after it. */
let stopping = false

/**
 * Aborts every multipart upload under way in this process and refuses new
 * ones: a packer stopped by a signal leaves no uploaded parts behind (S3
 * keeps and bills them until they are aborted). Returns how many it aborted.
 */
export async function abortOpenUploads(): Promise<number> {
  stopping = true
  const open = [...openUploads]
  openUploads.clear()
  await Promise.all(open.map(([UploadId, u]) => u.client.send(new AbortMultipartUploadCommand({ Bucket: u.bucket, Key: u.key, UploadId })).catch(() => undefined)))
  return open.length
}

function refuseWhenStopping(): void {
  if (stopping) throw new DesError('DES_UNAVAILABLE', 'the packer is stopping: upload abandoned')
}

/** Objects of one bucket written from local files. */
export class S3Uploader {
  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
  ) {}

  /**
   * True when the object at `key` holds the bytes of `file`, as far as S3
   * can say without reading it: its size, and the ETag uploading the file
   * here would give it (the MD5 of its bytes, or of its parts' MD5s). An
   * object put there another way (other part sizes, encryption that changes
   * ETags) is not proven the same: false, and the caller uploads it again.
   */
  async holdsFile(key: string, file: string, size: number): Promise<boolean> {
    let head
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
    } catch (err) {
      if (s3ErrorKind(err) === 'missing') return false
      throw err
    }
    if (head.ContentLength !== size || !head.ETag) return false
    return head.ETag.replace(/"/g, '') === (await uploadEtag(file, size))
  }

  /** The whole object, as of `etag`, into a local file. */
  async download(key: string, etag: string, file: string): Promise<void> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, IfMatch: etag }))
    await pipeline(res.Body as Readable, createWriteStream(file))
  }

  private async getRange(key: string, range: string, etag?: string): Promise<{ body: Buffer; etag: string; size: number }> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range, ...(etag ? { IfMatch: etag } : {}) }))
    const body = Buffer.from(await res.Body!.transformToByteArray())
    return { body, etag: res.ETag ?? '', size: totalFromContentRange(res.ContentRange) ?? body.length }
  }

  /** A local file as one object (one PutObject, or a multipart upload). */
  async putFile(key: string, file: string, size: number, cond: WriteCondition, beforeComplete?: () => Promise<void>): Promise<void> {
    if (size <= SINGLE_PUT_MAX) {
      await holding(size, async () => {
        const body = await fsp.readFile(file)
        await beforeComplete?.()
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: size, ...cond }))
      })
      return
    }
    await this.multipart(key, streamPieces(size, (off, len) => readFileRange(file, off, len)), cond, undefined, beforeComplete)
  }

  /** The new object = old bytes [0, dataEnd) + the tail file, if the old one is unchanged. */
  async putAppended(key: string, old: { etag: string; dataEnd: number }, tailFile: string, tailSize: number, beforeComplete?: () => Promise<void>): Promise<void> {
    const dataEnd = old.dataEnd
    const cond = { IfMatch: old.etag }
    if (dataEnd >= MIN_PART) {
      // Server-side copy of the old data section, in parts of at most 5 GiB.
      const n = Math.ceil(dataEnd / MAX_PART)
      const step = Math.ceil(dataEnd / n)
      const pieces: UploadPiece[] = []
      for (let start = 0; start < dataEnd; start += step) pieces.push({ copy: { start, end: Math.min(dataEnd, start + step) - 1 } })
      pieces.push(...streamPieces(tailSize, (off, len) => readFileRange(tailFile, off, len)))
      await this.multipart(key, pieces, cond, old.etag, beforeComplete)
      return
    }
    if (dataEnd + tailSize <= SINGLE_PUT_MAX) {
      // The old bytes, the tail and the two together.
      await holding(2 * (dataEnd + tailSize), async () => {
        const prefix = (await this.getRange(key, `bytes=0-${dataEnd - 1}`, old.etag)).body
        const body = Buffer.concat([prefix, await fsp.readFile(tailFile)])
        await beforeComplete?.()
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, ...cond }))
      })
      return
    }
    // Under 5 MiB of old data cannot be a part of its own: it leads the first part.
    const prefix = (await this.getRange(key, `bytes=0-${dataEnd - 1}`, old.etag)).body
    const read = async (off: number, len: number): Promise<Buffer> => {
      const fromPrefix = off < prefix.length ? prefix.subarray(off, Math.min(prefix.length, off + len)) : Buffer.alloc(0)
      const rest = len - fromPrefix.length
      if (rest === 0) return fromPrefix
      const fromFile = await readFileRange(tailFile, Math.max(0, off - prefix.length), rest)
      return fromPrefix.length ? Buffer.concat([fromPrefix, fromFile]) : fromFile
    }
    await this.multipart(key, streamPieces(prefix.length + tailSize, read), cond, undefined, beforeComplete)
  }

  /** A multipart upload of `pieces`, completed under `cond`; aborted on any failure. */
  private async multipart(key: string, pieces: UploadPiece[], cond: WriteCondition, copyIfMatch?: string, beforeComplete?: () => Promise<void>): Promise<void> {
    refuseWhenStopping()
    const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }))
    const uploadId = created.UploadId!
    openUploads.set(uploadId, { client: this.client, bucket: this.bucket, key })
    try {
      refuseWhenStopping()
      const parts = await mapLimit(pieces, 3, async (piece, i) => {
        const PartNumber = i + 1
        if ('copy' in piece) {
          const copyPart = (sourceKey: string) =>
            this.client.send(
              new UploadPartCopyCommand({
                Bucket: this.bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber,
                CopySource: copySource(this.bucket, sourceKey),
                CopySourceRange: `bytes=${piece.copy.start}-${piece.copy.end}`,
                ...(copyIfMatch ? { CopySourceIfMatch: copyIfMatch } : {}),
              }),
            )
          let res
          try {
            res = await copyPart(key)
          } catch (err) {
            // MinIO stores `/p/x` at `p/x` but refuses a copy source with a
            // leading slash: the copy is of the object as it stores it (the
            // If-Match above still holds it to the one we read).
            if (!refusesSlashedName(err) || keyReached(key) === key) throw err
            res = await copyPart(keyReached(key))
          }
          return { PartNumber, ETag: res.CopyPartResult?.ETag }
        }
        return holding(piece.length, async () => {
          const body = await piece.read()
          const res = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber, Body: body, ContentLength: body.length }))
          return { PartNumber, ETag: res.ETag }
        })
      })
      await beforeComplete?.()
      refuseWhenStopping()
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...cond }))
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => undefined)
      throw err
    } finally {
      openUploads.delete(uploadId)
    }
  }
}

/** Bytes of each part (but the last) when `size` bytes are uploaded in parts: PART_SIZE (more if needed to stay under 10 000 parts). */
function partSizeFor(size: number): number {
  return Math.max(PART_SIZE, Math.ceil(size / (MAX_PARTS - 10)))
}

/** The ETag S3 gives `file` uploaded by `putFile`: the MD5 of a single PUT, or of the parts' MD5s and their count. */
async function uploadEtag(file: string, size: number): Promise<string> {
  const partSize = size <= SINGLE_PUT_MAX ? size : partSizeFor(size)
  const parts: Buffer[] = []
  let part = createHash('md5')
  let inPart = 0
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(chunk.length - at, partSize - inPart)
      part.update(chunk.subarray(at, at + take))
      at += take
      inPart += take
      if (inPart === partSize) {
        parts.push(part.digest())
        part = createHash('md5')
        inPart = 0
      }
    }
  }
  if (inPart > 0 || parts.length === 0) parts.push(part.digest())
  if (size <= SINGLE_PUT_MAX) return parts[0].toString('hex')
  return `${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-${parts.length}`
}

/** Parts of a byte stream of `size`, read when their turn comes. */
function streamPieces(size: number, read: (offset: number, length: number) => Promise<Buffer>): UploadPiece[] {
  const partSize = partSizeFor(size)
  const pieces: UploadPiece[] = []
  for (let off = 0; off < size; off += partSize) {
    const len = Math.min(partSize, size - off)
    pieces.push({ length: len, read: () => read(off, len) })
  }
  return pieces
}
