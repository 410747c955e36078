// The packer: inputs → shards, on local disk or S3 (SPEC §3–5, §9).
//
// Order of work: check every input (fields, dates, duplicate uids, sources and
// sizes, the target, uids already stored) before writing anything; then, key
// by key, fill the last part of the key and continue in new parts when
// `maxShardSize` would be passed. Every part is replaced atomically (local:
// temp file + fsync + rename under the part's lock; S3: conditional
// completion on the old ETag), so a failure leaves each shard as it was or
// wholly written, never partial.
//
// Inputs come as an array or as a manifest stream (readManifest, or
// readManifestBatches a chunk's entries at a time); the plan (planner.ts)
// spills to temp files past `memoryEntries` (or `memoryBytes`), so a run of millions of files
// holds a bucket of keys at a time, not the manifest.
// `worker` splits one manifest's keys between processes (an Indexed Job).

//
// The run itself; the types are in types.ts, the public face in index.ts.

import { DesError } from '../errors'
import { Prefetch, type ShardReader, type ShardWriterOptions } from '../native'
import type { WriterSettings } from './fill'
import { isFolderName, isNBits, isZstdLevel, normalisePrefix } from '../config/checks'
import { DEFAULT_BIGFILES_PREFIX, DEFAULT_N_BITS, DEFAULT_TAIL_BYTES, MAX_N_BITS, MAX_ZSTD_LEVEL, MIN_N_BITS, MIN_ZSTD_LEVEL } from '../config/defaults'
import { shardKeyIn } from '../store/layout'
import { LocalTarget, type PartWrite, type ShardSink } from './local-target'
import type { ManifestEntry } from './manifest'
import { assignToParts, named } from './plan'
import { Budget } from '../budget'
import { availableCpus } from '../config/cpus'
import { Plan, Planner, type KeyInfo } from './planner'
import type { S3Target } from './s3-target'
import { mapLimit } from './sources'
import type { PackExtras, PackInput, PackOptions, PackResult, PackTarget, PackedShard, S3SourceOptions } from './types'

const CODECS = ['zstd', 'lz4', 'none'] as const
/** Keys packed at once unless the sink says (see `worker` in runPack). */
const KEY_WORKERS = 3
/** Inputs of the keys being packed at once, at most (a larger key is packed alone). */
const INPUTS_IN_HAND = 8_192
/** Bytes of their manifest text, at most, counted in the same budget (metas may be megabytes each). */
const ENTRY_BYTES_IN_HAND = 128 * 1024 * 1024
/** Keys whose existing parts are read at once before writing (S3: tail GETs). */
const PREPASS_CONCURRENCY = 16
/** Stored bytes of payloads read ahead while a local run is planned, at most. */
const READ_AHEAD_BYTES = 64 << 20

function checkOptions(opts: PackOptions): void {
  const bad = (what: string) => new DesError('DES_BAD_ARG', what)
  const nBits = opts.nBits ?? DEFAULT_N_BITS
  if (!isNBits(nBits)) throw bad(`n_bits must be an integer ${MIN_N_BITS}..${MAX_N_BITS}, got ${nBits}`)
  if (opts.maxShardSize !== undefined && !(Number.isSafeInteger(opts.maxShardSize) && opts.maxShardSize > 0)) {
    throw bad(`max shard size must be a positive number of bytes, got ${opts.maxShardSize}`)
  }
  if (opts.codec !== undefined && !CODECS.includes(opts.codec)) throw bad(`codec must be one of ${CODECS.join(', ')}, got ${opts.codec}`)
  if (opts.level !== undefined && !isZstdLevel(opts.level)) throw bad(`zstd level must be ${MIN_ZSTD_LEVEL}..${MAX_ZSTD_LEVEL}, got ${opts.level}`)
  if (opts.bigFileThreshold !== undefined && !(Number.isSafeInteger(opts.bigFileThreshold) && opts.bigFileThreshold >= 0)) {
    throw bad(`BigFile threshold must be a whole number of bytes, got ${opts.bigFileThreshold}`)
  }
  if (opts.bigfilesPrefix !== undefined && !isFolderName(opts.bigfilesPrefix)) throw bad(`BigFile prefix must be one folder name, got ${opts.bigfilesPrefix}`)
  if (opts.tailBytes !== undefined && !(Number.isSafeInteger(opts.tailBytes) && opts.tailBytes >= 12)) throw bad(`tail size must be a whole number of bytes, at least 12, got ${opts.tailBytes}`)
  if (opts.replace && opts.skipExisting) throw bad('replace and skipExisting cannot be combined')
  if (opts.layout !== undefined && opts.layout !== 'nested' && opts.layout !== 'flat') throw bad(`layout must be nested or flat, got ${opts.layout}`)
  if (opts.replace && opts.layout === 'flat') throw bad('replace rewrites the shard that holds a uid; the flat layout never rewrites a shard (convert the store to nested first, des convert)')
  const w = opts.worker
  if (w !== undefined && !(Number.isSafeInteger(w.count) && w.count >= 1 && Number.isSafeInteger(w.index) && w.index >= 0 && w.index < w.count)) {
    throw bad(`worker must be I/N with 0 <= I < N, got ${w.index}/${w.count}`)
  }
}

function writerSettings(opts: PackOptions): WriterSettings {
  const writer: ShardWriterOptions = {}
  if (opts.codec) writer.codec = opts.codec
  if (opts.level !== undefined) writer.level = opts.level
  if (opts.skipExtensions) writer.skipExtensions = opts.skipExtensions
  if (opts.bigFileThreshold !== undefined) writer.bigFileThreshold = opts.bigFileThreshold
  return { writer, bigfilesPrefix: opts.bigfilesPrefix ?? DEFAULT_BIGFILES_PREFIX, layout: opts.layout ?? 'nested', tailBytes: opts.tailBytes ?? DEFAULT_TAIL_BYTES, writePastCache: opts.writePastCache }
}

function sinkFor(target: PackTarget, settings: WriterSettings, extras: PackExtras, nBits: number): ShardSink {
  if (target?.kind === 'local') {
    if (typeof target.dir !== 'string' || target.dir === '') throw new DesError('DES_BAD_ARG', 'local target needs a dir')
    return new LocalTarget(target.dir, settings)
  }
  if (target?.kind === 's3') {
    if (!target.bucket) throw new DesError('DES_BAD_ARG', 'S3 target needs a bucket')
    const prefix = normalisePrefix(target.prefix)
    // Loaded here: it brings the AWS SDK, which a local run never needs.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { S3Target: Target } = require('./s3-target') as typeof import('./s3-target')
    return new Target(target.client, target.bucket, prefix, settings, extras.s3Hooks, extras.tmpDir)
  }
  if (target?.kind === 'zones') {
    // A zone's range means shard indexes of its n_bits: another routing would put keys in the wrong zones.
    if (target.nBits !== nBits) throw new DesError('DES_BAD_ARG', `the zones file routes with n_bits ${target.nBits}, this run with ${nBits}`)
    const zones = target.zones.map((z) => ({ zone: z, sink: sinkFor({ kind: 's3', bucket: z.bucket, prefix: z.prefix, client: z.client }, settings, extras, nBits) as S3Target }))
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { ZonedTarget } = require('./zoned-target') as typeof import('./zoned-target')
    return new ZonedTarget(nBits, zones)
  }
  throw new DesError('DES_BAD_ARG', 'target must be {kind: "local", dir}, {kind: "s3", bucket, prefix, client} or {kind: "zones", nBits, zones}')
}

/** Packs files into shards. See the module comment for the guarantees. */
export async function packFiles(inputs: PackInput[], target: PackTarget, opts: PackOptions = {}): Promise<PackResult> {
  return runPack(inputs, target, opts, {})
}

function* labelled(inputs: PackInput[], label: (i: number) => string): Generator<ManifestEntry> {
  for (let i = 0; i < inputs.length; i++) yield { input: inputs[i], label: label(i) }
}

function isAsyncIterable(x: unknown): x is AsyncIterable<ManifestEntry | ManifestEntry[]> {
  return typeof (x as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === 'function'
}

/**
 * `packFiles` over an array or a manifest stream (`readManifest`), with error
 * labels, a plan that spills to temp files past `memoryEntries`, and test
 * seams. A stream's result lists no uids per shard (they would be the whole
 * manifest in memory).
 */
export async function runPack(inputs: PackInput[] | AsyncIterable<ManifestEntry | ManifestEntry[]>, target: PackTarget, opts: PackOptions = {}, extras: PackExtras = {}): Promise<PackResult> {
  const started = process.hrtime.bigint()
  const fromArray = Array.isArray(inputs)
  if (!fromArray && !isAsyncIterable(inputs)) throw new DesError('DES_BAD_ARG', 'inputs must be an array')
  checkOptions(opts)
  const label = extras.label ?? ((i: number) => `input ${i + 1}`)
  const settings = writerSettings(opts)
  // A manifest is planned on this thread alone: the other cores read and
  // compress its first sources meanwhile (a local run's parts take them).
  // Not to store them raw: a read ahead then only competes with the plan.
  if (!fromArray && target?.kind === 'local' && !opts.dryRun && opts.codec !== 'none') {
    settings.prefetch = new Prefetch(settings.writer, READ_AHEAD_BYTES, Math.max(1, availableCpus() - 1))
  }
  const planner = new Planner({
    nBits: opts.nBits ?? DEFAULT_N_BITS,
    layout: opts.layout,
    worker: opts.worker,
    memoryEntries: extras.memoryEntries,
    memoryBytes: extras.memoryBytes,
    tmpDir: extras.tmpDir,
    expectedEntries: fromArray ? inputs.length : extras.expectedEntries,
    prefetch: settings.prefetch,
  })
  try {
    const plan = await planner.run(fromArray ? labelled(inputs, label) : inputs)
    const sourceS3 = plan.anyS3 ? (typeof opts.sourceS3 === 'function' ? opts.sourceS3() : opts.sourceS3) : undefined
    await plan.checkSources(sourceS3, extras.sourcesChecked)
    const sink = sinkFor(target, settings, extras, opts.nBits ?? DEFAULT_N_BITS)
    await sink.check(opts.dryRun)
    return await packPlan(plan, sink, opts, sourceS3, fromArray, started, extras, settings.prefetch)
  } finally {
    planner.dispose()
    settings.prefetch?.close()
  }
}

/** What a key takes of the INPUTS_IN_HAND budget: its inputs, or as many as its manifest text is of ENTRY_BYTES_IN_HAND if more. */
function handWeight(key: KeyInfo): number {
  return Math.max(key.files, Math.ceil((key.entryBytes / ENTRY_BYTES_IN_HAND) * INPUTS_IN_HAND))
}

async function packPlan(
  plan: Plan,
  sink: ShardSink,
  opts: PackOptions,
  sourceS3: S3SourceOptions | undefined,
  keepUids: boolean,
  started: bigint,
  extras: PackExtras,
  readAhead?: Prefetch,
): Promise<PackResult> {
  const knownParts = extras.existingParts
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9
  const layout = opts.layout ?? 'nested'
  // New files go to the last part (nested), or to a new shard after the last (flat: never rewrite one).
  const firstPart = (parts: number) => (layout === 'flat' ? parts : Math.max(0, parts - 1))
  let doneFiles = 0
  let doneBytes = 0
  const progress = (files: number, bytes: number) => {
    doneFiles += files
    doneBytes += bytes
    opts.onProgress?.({ files: doneFiles, bytes: doneBytes, totalFiles: plan.files, totalBytes: plan.bytes })
  }

  // A key the target cannot hold (zones: an index in no zone) fails the run
  // before anything is read or written; the run of every worker, since each
  // one would leave the manifest half stored.
  for (const [index, first] of plan.indexes) {
    const why = sink.refuses?.(index)
    if (why === undefined) continue
    throw new DesError('DES_CONFIG', `${named({ input: first, label: first.label })} routes to shard index ${index} (${first.dateDir}/${first.shardHex}), ${why}; nothing was written`, { uid: first.uid })
  }

  // Everything already stored is sorted out before anything is written, so a
  // duplicate uid fails the run with nothing changed. Only keys that already
  // have parts need their inputs here; readers are dropped after each key
  // (indexes of a large store do not all fit in memory). What a key needs is
  // worked out again when it is written (another run may have added to it).
  if (!knownParts) sink.expect?.(plan.keys)
  const skippedPerKey = await mapLimit(plan.keys, PREPASS_CONCURRENCY, async (key) => {
    // Finding the parts takes the key's location only: its inputs are loaded when it has some.
    const readers: Array<ShardReader | null> = knownParts?.(key) ?? (await sink.existingParts({ dateDir: key.dateDir, shardHex: key.shardHex, items: [] }))
    key.parts = readers.length
    if (readers.length === 0) return { files: 0, bytes: 0 }
    const assign = assignToParts(await plan.items(key), readers, opts)
    key.hits = assign.replacements.size > 0 || assign.skipped.length > 0
    return { files: assign.skipped.length, bytes: assign.skipped.reduce((s, p) => s + p.size, 0) }
  })
  if (opts.dryRun) {
    const skipped = skippedPerKey.reduce((s, k) => s + k.files, 0)
    return {
      shards: plan.keys.map((k, i) => ({
        key: shardKeyIn(layout, k, firstPart(k.parts)),
        files: k.files - skippedPerKey[i].files,
        uids: [],
        bytesIn: k.bytes - skippedPerKey[i].bytes,
        bytesStored: 0,
      })),
      files: plan.files - skipped,
      skipped,
      bytesIn: plan.bytes - skippedPerKey.reduce((s, k) => s + k.bytes, 0),
      bytesStored: 0,
      seconds: seconds(),
      dryRun: true,
    }
  }

  // The writing begins: sources are read from here in the order they are
  // written, by the parts themselves (a large part's own writer takes no
  // payload read ahead: reading on would read its sources twice).
  readAhead?.stop()
  // Beside the writing: never fails the run, whose files are stored either way.
  const tidying = (sink.tidy?.(plan.keys) ?? Promise.resolve(0)).then(
    (removed) => ({ removed, warning: undefined }),
    (err: unknown) => ({ removed: 0, warning: `temp files left by packers that died were not all removed: ${err instanceof Error ? err.message : String(err)}` }),
  )
  const shards: Array<{ shard: PackedShard; rank: number }> = []
  let skipped = 0
  let failure: unknown
  let nextKey = 0
  const ctxBase = { s3Source: sourceS3, skipExisting: opts.skipExisting, progress, knownPart: extras.knownPart, readBackByCaller: extras.readBackByCaller }
  // A worker packs one key at a time. A few of them keep both cores busy
  // through each key's serial steps (opening, index, fsync) and overlap S3
  // uploads with packing; each lets one part finish while its next part
  // packs. A local sink takes many keys at once: it packs small parts in
  // batches (part-batch.ts).
  // A sink that stores parts in groups (flush) reports them only when it
  // commits: its workers go on without waiting, and the run flushes at the end.
  const grouped = sink.flush !== undefined
  const finishings: Array<Promise<void>> = []
  // One key: its replaced uids, then its new files part by part. A function
  // of its own, so that what a key held is let go when it returns.
  const packKey = async (key: KeyInfo, settle: (w: PartWrite, rank: number) => Promise<void>) => {
    const keyPlan = await plan.keyPlan(key)
    // Keys are written in order of first appearance (by bucket when spilled), parts in order.
    const rank = (part: number) => key.ordinal * 1e6 + part
    let fresh = keyPlan.items
    let parts = key.parts
    if (key.hits) {
      const readers: Array<ShardReader | null> = await sink.existingParts(keyPlan)
      const assign = assignToParts(keyPlan.items, readers, opts)
      parts = readers.length
      if (assign.skipped.length) {
        skipped += assign.skipped.length
        progress(assign.skipped.length, assign.skipped.reduce((s, p) => s + p.size, 0))
      }
      for (const [part, list] of assign.replacements) {
        await settle(await sink.writePart(keyPlan, part, list, undefined, { ...ctxBase, replace: true }), rank(part))
      }
      fresh = assign.fresh
    }
    let rest = fresh
    for (let part = firstPart(parts); rest.length > 0; part++) {
      const w = await sink.writePart(keyPlan, part, rest, opts.maxShardSize, ctxBase)
      rest = w.fill.rest
      await settle(w, rank(part))
    }
  }
  const inHand = new Budget(INPUTS_IN_HAND)
  const worker = async () => {
    let finishing: Promise<void> = Promise.resolve()
    const settle = async (w: PartWrite, rank: number) => {
      const prev = finishing
      finishing = prev.then(() =>
        w.done.then(
          (s) => {
            // Counted once stored: a part that lands in one another run created may find some of its files there.
            skipped += w.fill.skipped.length
            if (s) shards.push({ shard: keepUids ? s : { ...s, uids: [] }, rank })
          },
          (err) => {
            failure ??= err
          },
        ),
      )
      if (!grouped) await prev
      if (failure) throw failure
    }
    try {
      while (!failure && nextKey < plan.keys.length) {
        const key = plan.keys[nextKey++]
        const release = await inHand.take(handWeight(key))
        try {
          await packKey(key, settle)
        } finally {
          release()
        }
      }
    } catch (err) {
      failure ??= err
    }
    if (grouped) finishings.push(finishing)
    else await finishing
  }
  await Promise.all(Array.from({ length: Math.min(sink.keysAtOnce ?? KEY_WORKERS, plan.keys.length) }, worker))
  if (grouped) {
    // What was staged is complete: commit it even after a failure (as parts
    // finished before a failure always were), then collect every outcome.
    await sink.flush!().catch((err) => {
      failure ??= err
    })
    await Promise.all(finishings)
  }
  const tidied = await tidying
  if (failure) {
    const written = shards.length
    if (written > 0 && failure instanceof DesError) {
      failure.message += ` (${written} shard${written === 1 ? '' : 's'} written before this are complete; ${extras.rerunHint ?? 'rerun with --skip-existing to finish'})`
    }
    throw failure
  }

  // One entry per stored object, in the order of the keys' first appearance, parts in order.
  const merged = new Map<string, { shard: PackedShard; rank: number }>()
  for (const { shard: s, rank } of shards) {
    const m = merged.get(s.key)
    if (!m) merged.set(s.key, { shard: { ...s, uids: [...s.uids] }, rank })
    else {
      m.shard.files += s.files
      m.shard.uids.push(...s.uids)
      m.shard.bytesIn += s.bytesIn
      m.shard.bytesStored += s.bytesStored
    }
  }
  const list = [...merged.values()].sort((a, b) => a.rank - b.rank).map((m) => m.shard)
  return {
    shards: list,
    files: list.reduce((s, x) => s + x.files, 0),
    skipped,
    bytesIn: list.reduce((s, x) => s + x.bytesIn, 0),
    bytesStored: list.reduce((s, x) => s + x.bytesStored, 0),
    seconds: seconds(),
    ...(tidied.removed > 0 ? { tempsRemoved: tidied.removed } : {}),
    ...(tidied.warning ? { warnings: [tidied.warning] } : {}),
  }
}
