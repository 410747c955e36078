// The packer: inputs → shards, on local disk or S3 (SPEC §3–5, §9).
//
// Order of work: check every input (fields, dates, duplicate uids, sources and
// sizes, the target, uids already stored) before writing anything; then, key
// by key in manifest order, fill the last part of the key and continue in new
// parts when `maxShardSize` would be passed. Every part is replaced atomically
// (local: temp file + fsync + rename under the part's lock; S3: conditional
// completion on the old ETag), so a failure leaves each shard as it was or
// wholly written, never partial.

import type { S3Client } from '@aws-sdk/client-s3'
import { DesError } from '../errors'
import type { ShardReader, ShardWriterOptions } from '../native'
import type { WriterSettings } from './fill'
import { LocalTarget, type PartWrite, type ShardSink } from './local-target'
import { assignToParts, planInputs } from './plan'
import { S3Target, type S3Hooks } from './s3-target'
import { checkSources, mapLimit, type S3SourceOptions } from './sources'

export { parseManifest, type Manifest } from './manifest'
export { formatBytes, progressBar } from './progress'

export interface PackInput {
  uid: string
  createdAt: string
  sizeBytes?: number
  /** A local path or s3://bucket/key. */
  source: string
  meta?: Record<string, unknown>
}

export type PackTarget = { kind: 'local'; dir: string } | { kind: 's3'; bucket: string; prefix: string; client: S3Client }

export interface PackOptions {
  /** Routing bits, 4..16 (default 8). */
  nBits?: number
  /** A part whose data section would pass this many bytes continues in `<HEX>.<n>.des`. */
  maxShardSize?: number
  codec?: 'zstd' | 'lz4' | 'none'
  /** zstd level (default 3). */
  level?: number
  /** Payloads larger than this become BigFiles (default 10 MiB). */
  bigFileThreshold?: number
  /** BigFile folder beside the shards (default `_bigFiles`). */
  bigfilesPrefix?: string
  /** Extensions stored raw (default .jpg .jpeg .png .gif .gz .zip .bz2 .xz). */
  skipExtensions?: string[]
  /** A uid already stored is replaced (in the part that holds it) instead of refused. */
  replace?: boolean
  /** A uid already in its shard with the same size is skipped, not an error: makes reruns idempotent. */
  skipExisting?: boolean
  sourceS3?: { client: S3Client; maxRetries?: number; retryDelayMs?: number }
  onProgress?: (p: { files: number; bytes: number; totalFiles: number; totalBytes: number }) => void
}

export interface PackedShard {
  /** Local: the key under the output dir (`20240101/0A.des`); S3: the object key (prefix included). */
  key: string
  /** Files this run added to it. */
  files: number
  uids: string[]
  bytesIn: number
  bytesStored: number
}

export interface PackResult {
  shards: PackedShard[]
  files: number
  skipped: number
  bytesIn: number
  bytesStored: number
  seconds: number
}

/** Extras for the CLI and tests: how inputs are named in errors, S3 test seams. */
export interface PackExtras {
  /** How error messages name input `i` (default `input <i+1>`). */
  label?: (i: number) => string
  s3Hooks?: S3Hooks
  /** Folder for S3 temp files (default the OS temp dir). */
  tmpDir?: string
}

const CODECS = ['zstd', 'lz4', 'none'] as const
/** Keys packed at once (see `worker` in runPack). */
const KEY_WORKERS = 3
/** Keys whose existing parts are read at once before writing (S3: tail GETs). */
const PREPASS_CONCURRENCY = 16

function checkOptions(opts: PackOptions): void {
  const bad = (what: string) => new DesError('DES_BAD_ARG', what)
  const nBits = opts.nBits ?? 8
  if (!Number.isInteger(nBits) || nBits < 4 || nBits > 16) throw bad(`n_bits must be an integer 4..16, got ${nBits}`)
  if (opts.maxShardSize !== undefined && !(Number.isSafeInteger(opts.maxShardSize) && opts.maxShardSize > 0)) {
    throw bad(`max shard size must be a positive number of bytes, got ${opts.maxShardSize}`)
  }
  if (opts.codec !== undefined && !CODECS.includes(opts.codec)) throw bad(`codec must be one of ${CODECS.join(', ')}, got ${opts.codec}`)
  if (opts.level !== undefined && !(Number.isInteger(opts.level) && opts.level >= -7 && opts.level <= 22)) throw bad(`zstd level must be -7..22, got ${opts.level}`)
  if (opts.bigFileThreshold !== undefined && !(Number.isSafeInteger(opts.bigFileThreshold) && opts.bigFileThreshold >= 0)) {
    throw bad(`BigFile threshold must be a whole number of bytes, got ${opts.bigFileThreshold}`)
  }
  if (opts.bigfilesPrefix !== undefined && !/^[A-Za-z0-9._-]+$/.test(opts.bigfilesPrefix)) throw bad(`BigFile prefix must be one folder name, got ${opts.bigfilesPrefix}`)
  if (opts.replace && opts.skipExisting) throw bad('replace and skipExisting cannot be combined')
}

function writerSettings(opts: PackOptions): WriterSettings {
  const writer: ShardWriterOptions = {}
  if (opts.codec) writer.codec = opts.codec
  if (opts.level !== undefined) writer.level = opts.level
  if (opts.skipExtensions) writer.skipExtensions = opts.skipExtensions
  if (opts.bigFileThreshold !== undefined) writer.bigFileThreshold = opts.bigFileThreshold
  return { writer, bigfilesPrefix: opts.bigfilesPrefix ?? '_bigFiles' }
}

function sinkFor(target: PackTarget, settings: WriterSettings, extras: PackExtras): ShardSink {
  if (target?.kind === 'local') {
    if (typeof target.dir !== 'string' || target.dir === '') throw new DesError('DES_BAD_ARG', 'local target needs a dir')
    return new LocalTarget(target.dir, settings)
  }
  if (target?.kind === 's3') {
    if (!target.bucket) throw new DesError('DES_BAD_ARG', 'S3 target needs a bucket')
    const p = (target.prefix ?? '').replace(/^\/+/, '')
    const prefix = p === '' || p.endsWith('/') ? p : `${p}/`
    return new S3Target(target.client, target.bucket, prefix, settings, extras.s3Hooks, extras.tmpDir)
  }
  throw new DesError('DES_BAD_ARG', 'target must be {kind: "local", dir} or {kind: "s3", bucket, prefix, client}')
}

/** Packs files into shards. See the module comment for the guarantees. */
export async function packFiles(inputs: PackInput[], target: PackTarget, opts: PackOptions = {}): Promise<PackResult> {
  return runPack(inputs, target, opts, {})
}

/** `packFiles` with error labels and test seams. */
export async function runPack(inputs: PackInput[], target: PackTarget, opts: PackOptions = {}, extras: PackExtras = {}): Promise<PackResult> {
  const started = process.hrtime.bigint()
  if (!Array.isArray(inputs)) throw new DesError('DES_BAD_ARG', 'inputs must be an array')
  checkOptions(opts)
  const label = extras.label ?? ((i: number) => `input ${i + 1}`)
  const { keys, items } = planInputs(inputs, opts.nBits ?? 8, label)
  const sourceS3: S3SourceOptions | undefined = opts.sourceS3
  await checkSources(items, sourceS3)
  const sink = sinkFor(target, writerSettings(opts), extras)
  await sink.check()

  const totalFiles = items.length
  const totalBytes = items.reduce((s, p) => s + p.size, 0)
  let doneFiles = 0
  let doneBytes = 0
  const progress = (files: number, bytes: number) => {
    doneFiles += files
    doneBytes += bytes
    opts.onProgress?.({ files: doneFiles, bytes: doneBytes, totalFiles, totalBytes })
  }

  // Everything already stored is sorted out before anything is written, so a
  // duplicate uid fails the run with nothing changed. Readers are dropped after
  // each key (indexes of a large store do not all fit in memory).
  const assignments = await mapLimit(keys, PREPASS_CONCURRENCY, async (plan) => {
    const readers: Array<ShardReader | null> = await sink.existingParts(plan)
    return { plan, parts: readers.length, assign: assignToParts(plan.items, readers, opts) }
  })
  let skipped = 0
  for (const a of assignments) {
    skipped += a.assign.skipped.length
    if (a.assign.skipped.length) progress(a.assign.skipped.length, a.assign.skipped.reduce((s, p) => s + p.size, 0))
  }

  const shards: PackedShard[] = []
  let failure: unknown
  let nextKey = 0
  const ctxBase = { s3Source: sourceS3, skipExisting: opts.skipExisting, progress }
  // A worker packs one key at a time. Two of them keep both cores busy through
  // each key's serial steps (opening, index, fsync) and overlap S3 uploads
  // with packing; each lets one part finish while its next part packs.
  const worker = async () => {
    let finishing: Promise<void> = Promise.resolve()
    const settle = async (w: PartWrite) => {
      const prev = finishing
      finishing = prev.then(() =>
        w.done.then(
          (s) => {
            if (s) shards.push(s)
          },
          (err) => {
            failure ??= err
          },
        ),
      )
      await prev
      if (failure) throw failure
    }
    try {
      while (!failure && nextKey < assignments.length) {
        const { plan, parts, assign } = assignments[nextKey++]
        for (const [part, list] of assign.replacements) {
          await settle(await sink.writePart(plan, part, list, undefined, { ...ctxBase, replace: true }))
        }
        let rest = assign.fresh
        for (let part = Math.max(0, parts - 1); rest.length > 0; part++) {
          const w = await sink.writePart(plan, part, rest, opts.maxShardSize, ctxBase)
          skipped += w.fill.skipped.length
          rest = w.fill.rest
          await settle(w)
        }
      }
    } catch (err) {
      failure ??= err
    }
    await finishing
  }
  await Promise.all(Array.from({ length: Math.min(KEY_WORKERS, assignments.length) }, worker))
  if (failure) {
    const written = shards.length
    if (written > 0 && failure instanceof DesError) {
      failure.message += ` (${written} shard${written === 1 ? '' : 's'} written before this are complete; rerun with --skip-existing to finish)`
    }
    throw failure
  }

  const merged = new Map<string, PackedShard>()
  for (const s of shards) {
    const m = merged.get(s.key)
    if (!m) merged.set(s.key, { ...s, uids: [...s.uids] })
    else {
      m.files += s.files
      m.uids.push(...s.uids)
      m.bytesIn += s.bytesIn
      m.bytesStored += s.bytesStored
    }
  }
  // In manifest order of keys, parts in order, whichever worker finished first.
  const order = new Map(keys.map((k, i) => [`${k.dateDir}/${k.shardHex}`, i]))
  const rank = (key: string) => {
    const m = /(\d{8})\/([0-9A-F]+)(?:\.(\d+))?\.des$/.exec(key)
    return m ? (order.get(`${m[1]}/${m[2]}`) ?? 0) * 1e6 + Number(m[3] ?? 0) : 0
  }
  const list = [...merged.values()].sort((a, b) => rank(a.key) - rank(b.key))
  return {
    shards: list,
    files: list.reduce((s, x) => s + x.files, 0),
    skipped,
    bytesIn: list.reduce((s, x) => s + x.bytesIn, 0),
    bytesStored: list.reduce((s, x) => s + x.bytesStored, 0),
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
  }
}
