// Checking one object: a shard (every byte read once: on local disk by the
// native reader, elsewhere as its tail plus one streamed GET of the rest, fed
// to the native streaming verifier) or a BigFile (streamed through sha256).

import { createHash } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import { DesError } from '../errors'
import { ShardReader, ShardVerifier, verifyShardFile, type EntryInfo, type VerifyProblem, type VerifyReport } from '../native'
import type { ByteSource, ObjectTail } from '../storage/source'
import { withIndexBefore } from '../store/shard'

/** Where a shard problem lies (the native report's regions). */
export type Region = 'header' | 'data' | 'index' | 'footer' | 'entry' | 'bigfile'

/** One thing wrong inside a shard, as the native verifier reports it. */
export interface ShardProblem {
  uid: string | null
  region: Region
  code: string
  error: string
}

/** A shard's index, paged (never every entry in JS at once). */
export interface IndexPages {
  readonly entryCount: number
  entries(start?: number, count?: number): EntryInfo[]
}

export interface ShardCheck {
  /** Bytes of the object read. */
  bytes: number
  entries: number
  /** Entries (and the index) carry checksums, so a flipped byte in a stored-raw entry is found too; null when the index could not be read. */
  checksummed: boolean | null
  /** Problems of the bytes; BigFile problems excluded (checked once per object, by the caller). */
  problems: ShardProblem[]
  /** The index, when it could be parsed. */
  index: IndexPages | null
}

/** Bytes handed to the streaming verifier at a time (at most this plus one body chunk held per shard). */
const FEED_BYTES = 1 << 20

/** A report problem with the machine's paths made store-relative. */
function problemOf(p: VerifyProblem, paths: Array<[string, string]>): ShardProblem {
  return { uid: p.uid ?? null, region: p.region, code: p.code, error: relativise(p.error, paths) }
}

/** Where an error that stops the index from being read lies, from its message. */
function regionOf(message: string): Region {
  // Footer first: its messages name the header too ("between header and footer"). A shard too
  // small for both is the footer's, as the local verify says.
  if (/footer|DESI|too small to be a shard/i.test(message)) return 'footer'
  if (/header|DES2|version/i.test(message)) return 'header'
  return 'index'
}

/** Machine paths in a native message made into the store-relative key. */
function relativise(message: string, paths: Array<[string, string]>): string {
  let out = message
  for (const [abs, rel] of paths) out = out.split(abs).join(rel)
  return out
}

function unreadableIndex(err: unknown, bytes: number, paths: Array<[string, string]>): ShardCheck {
  const e = err as DesError
  if (!(e instanceof DesError) || !['DES_CORRUPT', 'DES_BAD_ARG', 'DES_NEED_MORE'].includes(e.code)) throw err
  const error = relativise(e.message, paths)
  return { bytes, entries: 0, checksummed: null, index: null, problems: [{ uid: null, region: regionOf(error), code: 'DES_CORRUPT', error }] }
}

/** The report's problems, less those of BigFiles (each BigFile object is checked once, by the caller). */
function shardProblems(report: VerifyReport, paths: Array<[string, string]>): ShardProblem[] {
  return report.problems.filter((p) => p.region !== 'bigfile').map((p) => problemOf(p, paths))
}

/**
 * A local shard: the native one-pass verify (every byte, in Rust; BigFiles
 * skipped, see NO_BIGFILES), and its index for the checks done here. A
 * damaged index is reported by the verify; there is then no index to page.
 */
async function checkLocalShard(file: string, key: string): Promise<ShardCheck> {
  const paths: Array<[string, string]> = [[file, key]]
  let bytes: number
  try {
    bytes = (await fsp.stat(file)).size
  } catch {
    throw new DesError('DES_NOT_FOUND', `no object ${key}`)
  }
  let report: VerifyReport
  try {
    // BigFiles are checked once each by the scan, whichever shards name them.
    report = await verifyShardFile(file, undefined, { checkBigfiles: false })
  } catch (err) {
    throw err instanceof DesError ? new DesError(err.code, relativise(err.message, paths), { cause: err }) : err
  }
  const index = report.entries > 0 ? await ShardReader.open(file).catch(() => null) : null
  // An index that did not read says nothing about checksums.
  const indexRead = !report.problems.some((p) => p.region === 'index' || p.region === 'footer')
  return { bytes, entries: report.entries, checksummed: indexRead ? report.checksummed : null, problems: shardProblems(report, paths), index }
}

/** The index from a tail, fetching the part of a larger index the tail missed (the tail then starts at the index). */
async function fromTail<T>(source: ByteSource, key: string, tail: ObjectTail, parse: (bytes: Buffer) => Promise<T>): Promise<{ parsed: T; tail: Buffer }> {
  try {
    return { parsed: await parse(tail.bytes), tail: tail.bytes }
  } catch (err) {
    if ((err as DesError)?.code !== 'DES_NEED_MORE') throw err
  }
  const longer = await withIndexBefore(source, key, tail)
  return { parsed: await parse(longer), tail: longer }
}

/**
 * A shard anywhere else: its tail (one suffix GET), then one streamed GET of
 * every byte before the tail, fed chunk by chunk to the native verifier.
 */
async function checkStreamedShard(source: ByteSource, key: string, tailBytes: number, onBytes: (n: number) => void): Promise<ShardCheck> {
  const tail = await source.getTail(key, tailBytes)
  onBytes(tail.bytes.length)
  let verifier: ShardVerifier
  let tailLength: number
  try {
    const opened = await fromTail(source, key, tail, (bytes) => ShardVerifier.fromTail(bytes, tail.objectSize))
    verifier = opened.parsed
    tailLength = opened.tail.length
  } catch (err) {
    return unreadableIndex(err, tail.bytes.length, [])
  }
  onBytes(tailLength - tail.bytes.length)
  if (verifier.streamBytes > 0) {
    const { body } = await source.stream(key, { start: 0, end: verifier.streamBytes - 1 }, { type: 'payload', etag: tail.etag })
    try {
      // The body arrives in chunks of tens of KiB: fed in pieces of about
      // FEED_BYTES, each feed (a trip to the thread pool) is worth its cost.
      let held: Buffer[] = []
      let heldBytes = 0
      for await (const chunk of body) {
        held.push(chunk as Buffer)
        heldBytes += (chunk as Buffer).length
        if (heldBytes < FEED_BYTES) continue
        await verifier.feed(held.length === 1 ? held[0] : Buffer.concat(held, heldBytes))
        onBytes(heldBytes)
        held = []
        heldBytes = 0
      }
      if (heldBytes > 0) {
        await verifier.feed(Buffer.concat(held, heldBytes))
        onBytes(heldBytes)
      }
    } finally {
      body.destroy()
    }
  }
  const report = await verifier.finish()
  return { bytes: tail.objectSize, entries: report.entries, checksummed: report.checksummed, problems: shardProblems(report, []), index: verifier }
}

/** Checks one shard object of `source`. DES_NOT_FOUND when it is gone. */
export async function checkShard(source: ByteSource, key: string, tailBytes: number, onBytes: (n: number) => void = () => {}): Promise<ShardCheck> {
  if (source.localPath) {
    const check = await checkLocalShard(source.localPath(key), key)
    onBytes(check.bytes)
    return check
  }
  return checkStreamedShard(source, key, tailBytes, onBytes)
}

export interface BigfileCheck {
  /** Bytes of the object read (it stops past the limit it was given). */
  bytes: number
  /** null when the object is missing. */
  sha256: string | null
}

/** Streams a BigFile object through sha256. `sha256: null` when there is no such object. */
export async function checkBigfile(source: ByteSource, key: string, onBytes: (n: number) => void = () => {}, limit = Number.MAX_SAFE_INTEGER): Promise<BigfileCheck> {
  let body
  try {
    body = (await source.stream(key, undefined, { type: 'bigfile' })).body
  } catch (err) {
    if ((err as DesError)?.code === 'DES_NOT_FOUND') return { bytes: 0, sha256: null }
    throw err
  }
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of body) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
    onBytes((chunk as Buffer).length)
    // Past the size its entry says it is wrong already: not read to the end (a device never ends).
    if (bytes > limit) {
      body.destroy()
      break
    }
  }
  return { bytes, sha256: hash.digest('hex') }
}
