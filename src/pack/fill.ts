// Filling one open shard writer with inputs: chunk by chunk (the next chunk's
// s3:// sources are fetched while Rust compresses this one), stopping where
// the part is full. Shared by the local and the S3 target.

import type { Layout } from '../config/env'
import { DesError } from '../errors'
import type { PackFile, Prefetch, ShardWriter, ShardWriterOptions } from '../native'
import { named, type PlannedInput } from './plan'
import { chunkLimits, chunks, isLocal, loadChunk, localArrays, type S3SourceOptions } from './sources'
import type { PackExtras } from './types'

/** How every part of a run is written. */
export interface WriterSettings {
  /** Codec, level, skip extensions, BigFile threshold (no paths, no replace). */
  writer: ShardWriterOptions
  /** Folder name of BigFiles beside the shards (`_bigFiles`). */
  bigfilesPrefix: string
  /** Where shards and BigFiles go: nested (default) or the reference's flat layout. */
  layout?: Layout
  /** Suffix read of an existing S3 shard's footer and index (DES_TAIL_BYTES; default 64 KiB). */
  tailBytes?: number
  /** A local store's new shards are written past the page cache (default true; S3 parts never are). */
  writePastCache?: boolean
  /** Payloads read ahead for this run (made with `writer`), taken by the parts packed in batches. */
  prefetch?: Prefetch
}

/** What a target needs to fill writers. */
export interface FillContext {
  s3Source?: S3SourceOptions
  /** A uid already in the part (put there by another run meanwhile) is skipped. */
  skipExisting?: boolean
  /** Replacing: the uid is expected in the part. */
  replace?: boolean
  /** Called after every chunk with the files and source bytes it handled. */
  progress(files: number, bytes: number): void
  /** See PackExtras.knownPart. */
  knownPart?: PackExtras['knownPart']
  /** See PackExtras.readBackByCaller. */
  readBackByCaller?: boolean
}

/** What went into one part. */
export interface FillResult {
  added: PlannedInput[]
  skipped: PlannedInput[]
  /** Inputs that did not fit (for the next part), in order. */
  rest: PlannedInput[]
  /** Files and bytes reported to `progress` (to take back if the part is redone). */
  reportedFiles: number
  reportedBytes: number
}

/** Local files go as parallel arrays (`localArrays`: far cheaper to pass than an object each), fetched bytes as objects. */
function addBatch(writer: ShardWriter, toAdd: PlannedInput[], fetched: PackFile[] | null, maxDataSize: number | undefined): Promise<{ consumed: number }> {
  if (fetched) return writer.addFiles(fetched, maxDataSize)
  const a = localArrays(toAdd)
  return writer.addPaths(a.uids, a.paths, a.sizes, a.metas, maxDataSize)
}

/** A uid already in the part it would go to, without --skip-existing. */
export function alreadyStored(p: PlannedInput): DesError {
  return new DesError('DES_DUPLICATE', `${named(p)} is already in its shard; use --replace to overwrite it`, { uid: p.input.uid })
}

/** A Rust error about one file carries its uid: add where it is in the manifest. */
export function withLabel(err: unknown, items: PlannedInput[]): unknown {
  if (!(err instanceof DesError) || err.uid === undefined) return err
  const item = items.find((p) => p.input.uid === err.uid)
  const named = `uid ${JSON.stringify(err.uid)}`
  if (item) err.message = err.message.includes(named) ? err.message.replace(named, `${named} (${item.label})`) : `${named} (${item.label}): ${err.message}`
  // A size the manifest left out was the source's own when the run looked at it.
  if (item && item.input.sizeBytes === undefined) err.message = err.message.replace(/, the manifest says (\d+)$/, ', it was $1 bytes when the run began')
  return err
}

/** Reports inputs a part handled (added or skipped) to the run's progress, and counts them in `out`. */
export function report(out: FillResult, ctx: FillContext, done: PlannedInput[]): void {
  if (done.length === 0) return
  const bytes = done.reduce((s, p) => s + p.size, 0)
  out.reportedFiles += done.length
  out.reportedBytes += bytes
  ctx.progress(done.length, bytes)
}

/**
 * `items` without those the part holds already (another run stored them):
 * skipped with skipExisting (and reported in `out`), else refused. A part
 * that started empty and holds only what this run added needs no lookups.
 */
function notHeld(writer: ShardWriter, items: PlannedInput[], ctx: FillContext, out: FillResult): { fresh: PlannedInput[]; held: PlannedInput[] } {
  if (ctx.replace || writer.entryCount <= out.added.length) return { fresh: items, held: [] }
  const fresh: PlannedInput[] = []
  const held: PlannedInput[] = []
  for (const p of items) {
    if (!writer.has(p.input.uid)) fresh.push(p)
    else if (!ctx.skipExisting) throw alreadyStored(p)
    else held.push(p)
  }
  if (held.length > 0) {
    out.skipped.push(...held)
    report(out, ctx, held)
  }
  return { fresh, held }
}

/**
 * Adds `items` to `writer` in order until they run out or the data section
 * would pass `maxDataSize` (a part always takes at least one file when empty).
 */
export async function fillWriter(writer: ShardWriter, items: PlannedInput[], maxDataSize: number | undefined, ctx: FillContext): Promise<FillResult> {
  const { maxBytes, maxFiles } = chunkLimits(items)
  const parts = chunks(items, maxBytes, maxFiles)
  const out: FillResult = { added: [], skipped: [], rest: [], reportedFiles: 0, reportedBytes: 0 }
  let next: Promise<PackFile[]> | undefined
  for (let c = 0; c < parts.length; c++) {
    const chunk = parts[c]
    // Under the part's lock now: what another run added meanwhile is seen here.
    const { fresh: toAdd, held: skipped } = notHeld(writer, chunk, ctx, out)
    // Local files are read by Rust; a chunk with s3:// sources is fetched here.
    const files = toAdd.every(isLocal) ? null : await (next ?? loadChunk(toAdd, ctx.s3Source))
    next = undefined
    if (c + 1 < parts.length && !parts[c + 1].every(isLocal)) {
      // Prefetch the next chunk; what the skip filter then drops is just not used.
      next = loadChunk(parts[c + 1], ctx.s3Source)
      next.catch(() => undefined)
    }
    // `files` is the whole chunk when it was fetched before the skip filter ran.
    const wanted = files && skipped.length > 0 ? new Set(toAdd.map((p) => p.input.uid)) : undefined
    const fetched = files && wanted ? files.filter((f) => wanted.has(f.uid)) : files
    const r = toAdd.length > 0 ? await addBatch(writer, toAdd, fetched, maxDataSize).catch((err) => Promise.reject(withLabel(err, toAdd))) : { consumed: 0 }
    const added = toAdd.slice(0, r.consumed)
    out.added.push(...added)
    report(out, ctx, added)
    if (r.consumed < toAdd.length) {
      // The part is full. The later chunks' files move on with the rest, but
      // not one the part holds already (another run stored it): a uid is in
      // one part of its key.
      out.rest = [...toAdd.slice(r.consumed), ...notHeld(writer, parts.slice(c + 1).flat(), ctx, out).fresh]
      break
    }
  }
  return out
}
