// Packing into a local store: `<dir>/<date>/<HEX>[.<part>].des`, BigFiles in
// `<dir>/<date>/<prefix>/`. The Rust writer does the hard part: it takes its
// turn on the part (a lock on the shard file itself, no lock file in the
// store) so concurrent runs never lose each other's files, stages the new
// payloads in a temp file beside it (never named `.des`), and then creates
// the part with a rename or appends to it in place (docs/FORMAT.md,
// Appending); parts are made durable in groups (commit-group.ts). Small
// parts of local files go to Rust many at a time (part-batch.ts).

import { promises as fsp, statSync } from 'node:fs'
import * as path from 'node:path'
import { DEFAULT_BIGFILES_PREFIX, DEFAULT_WRITE_PAST_CACHE, STALE_TEMP_MS } from '../config/defaults'
import { DesError } from '../errors'
import { decodeError, removeStaleTemps, ShardReader, ShardWriter, type PartFiles, type ShardWriteSummary, type ShardWriterOptions } from '../native'
import { Budget } from '../budget'
import { CommitGroup } from './commit-group'
import { BATCHES_AT_ONCE, BATCH_PARTS, PartBatch } from './part-batch'
import { isLocal, localArrays } from './sources'
import { bigfileDirIn, shardKeyIn } from '../store/layout'
import { alreadyStored, fillWriter, report, withLabel, type FillContext, type FillResult, type WriterSettings } from './fill'
import { assignToParts, type KeyPlan, type PlannedInput } from './plan'
import type { PackedShard } from './types'

/** One part written: what went in, and the shard once it is durably stored. */
export interface PartWrite {
  fill: FillResult
  /** Resolves when the part is stored (null if nothing was added to it). */
  done: Promise<PackedShard | null>
}

/** Where a target keeps a key's parts and how it writes one. */
export interface ShardSink {
  /** The target can be written to (`dryRun`: only read; nothing is created). */
  check(dryRun?: boolean): Promise<void>
  existingParts(plan: KeyPlan): Promise<ShardReader[]>
  writePart(plan: KeyPlan, part: number, items: PlannedInput[], maxShardSize: number | undefined, ctx: FillContext): Promise<PartWrite>
  /** Why keys of `shardIndex` cannot be written here (zones: an index in no zone); undefined when they can. */
  refuses?(shardIndex: number): string | undefined
  /** The keys the run will look at, told before the first (lets a sink list instead of probing each). */
  expect?(keys: Iterable<Pick<KeyPlan, 'dateDir' | 'shardHex'>>): void
  /**
   * Removes what writers that died left in the folders the keys are written
   * to (local: their temp files); resolves to how many files.
   */
  tidy?(keys: Iterable<Pick<KeyPlan, 'dateDir' | 'shardHex'>>): Promise<number>
  /** Keys the run packs at once (default 3). */
  keysAtOnce?: number
  /**
   * Present when parts are stored in groups: a part's `done` then resolves
   * only when its group is committed, and this commits what is left (the run
   * calls it once no more parts come).
   */
  flush?(): Promise<void>
}

/** One part to write: where it goes, its size now (null: none yet, or no `maxShardSize` to hold it to), what goes in. */
interface PartTask {
  plan: KeyPlan
  part: number
  file: string
  size: number | null
  items: PlannedInput[]
  maxShardSize: number | undefined
  ctx: FillContext
}

/**
 * The folders that name the ones `mkdir` made, from `first` down to `dir`:
 * each made folder is named in the one above it (the store's own entries
 * are the writer's to sync).
 */
export function foldersNaming(first: string, dir: string): string[] {
  const top = path.dirname(path.resolve(first))
  const out: string[] = []
  for (let at = path.dirname(path.resolve(dir)); ; at = path.dirname(at)) {
    out.push(at)
    if (at === top || at === path.dirname(at)) return out
  }
}

/** Syncs each folder (best effort: not every platform syncs a folder). */
async function syncFolders(folders: string[]): Promise<void> {
  for (const at of folders) {
    const folder = await fsp.open(at, 'r').catch(() => null)
    await folder?.sync().catch(() => undefined)
    await folder?.close()
  }
}

/**
 * A part found full (or created full by another run meanwhile): the inputs
 * go on to the next part, but not those another run has stored in this one
 * since the run looked (skipped with --skip-existing and the same size,
 * else refused): a uid is in one part of its key only.
 */
export function passOver(part: ShardReader, items: PlannedInput[], ctx: FillContext): PartWrite {
  const { fresh, skipped } = assignToParts(items, [part], { skipExisting: ctx.skipExisting })
  const fill: FillResult = { added: [], skipped, rest: fresh, reportedFiles: 0, reportedBytes: 0 }
  report(fill, ctx, skipped)
  return { fill, done: Promise.resolve(null) }
}

/**
 * The size of a part, null when there is none. A stat takes microseconds: it
 * is made on this thread, not queued on the thread pool behind the parts
 * being compressed and synced there.
 */
function sizeOf(file: string): number | null {
  try {
    return statSync(file, { throwIfNoEntry: false })?.size ?? null
  } catch (err) {
    throw new DesError('DES_IO', `cannot stat ${file}: ${(err as Error).message}`)
  }
}

/**
 * A part goes through the batch when it is small and its files are all local
 * (no S3 source to fetch) and it only adds (replacing takes the one-by-one
 * path). A large part gains nothing from batching; through the writer its
 * progress is reported chunk by chunk.
 */
const BATCH_MAX_BYTES = 16 << 20
const BATCH_MAX_FILES = 1024
/** Parts written through their own writer at once (the run's keys at once before batching). */
const WRITERS_AT_ONCE = 3

/**
 * The part was to be created, another run created it meanwhile, and these
 * files do not fit in it under `maxShardSize`: they go on to the next part.
 */
function lostCreateRace(err: unknown, size: number | null, maxShardSize: number | undefined): boolean {
  return err instanceof DesError && err.code === 'DES_CHANGED' && size === null && maxShardSize !== undefined
}

function batchable(items: PlannedInput[], ctx: FillContext): boolean {
  if (ctx.replace || items.length > BATCH_MAX_FILES) return false
  let bytes = 0
  for (const p of items) {
    if (!isLocal(p)) return false
    bytes += p.size
  }
  return bytes <= BATCH_MAX_BYTES
}

export class LocalTarget implements ShardSink {
  private readonly group = new CommitGroup()
  private readonly batch: PartBatch
  /** How every part of this run is written (the settings' writer options, and past the cache or not). */
  private readonly writerOptions: ShardWriterOptions
  /** Parts written through a writer of their own at once. */
  private readonly writers = new Budget(WRITERS_AT_ONCE)
  /** Enough keys to fill the batches in flight (the run's budget of inputs in hand still applies). */
  readonly keysAtOnce = BATCHES_AT_ONCE * BATCH_PARTS

  constructor(
    readonly dir: string,
    private readonly settings: WriterSettings,
  ) {
    // Every new part is written past the page cache (unless the settings say
    // not): it is synced at once and this run does not read its payloads
    // back, so the cache would only cost a second copy of each byte and evict
    // what readers had cached.
    this.writerOptions = { ...settings.writer, writePastCache: settings.writePastCache ?? DEFAULT_WRITE_PAST_CACHE }
    this.batch = new PartBatch(this.writerOptions, settings.prefetch)
  }

  flush(): Promise<void> {
    return this.group.commit()
  }

  async check(dryRun = false): Promise<void> {
    if (dryRun) {
      // A store that does not exist yet has no parts: nothing to check.
      const st = await fsp.stat(this.dir).catch(() => null)
      if (st && !st.isDirectory()) throw new DesError('DES_IO', `output dir ${this.dir} is not a directory`)
      return
    }
    try {
      const made = await fsp.mkdir(this.dir, { recursive: true })
      await fsp.access(this.dir, fsp.constants.W_OK)
      // A store made now is durable before its first shard is.
      if (made !== undefined) await syncFolders(foldersNaming(made, this.dir))
    } catch (err) {
      throw new DesError('DES_IO', `output dir ${this.dir} is not writable: ${(err as Error).message}`)
    }
  }

  partPath(plan: Pick<KeyPlan, 'dateDir' | 'shardHex'>, part: number): string {
    return path.join(this.dir, shardKeyIn(this.settings.layout ?? 'nested', plan, part))
  }

  /**
   * Removes the stale temp files (see STALE_TEMP_MS) of the folders these
   * keys' parts and BigFiles go to: a packer killed mid-write leaves up to a
   * shard's bytes there, and no later write would use them.
   */
  tidy(keys: Iterable<Pick<KeyPlan, 'dateDir' | 'shardHex'>>): Promise<number> {
    const layout = this.settings.layout ?? 'nested'
    const dirs = new Set<string>()
    // A key's folders depend on its date alone: each date's once (a run has thousands of keys, a few dates).
    const dates = new Set<string>()
    for (const key of keys) {
      if (dates.has(key.dateDir)) continue
      dates.add(key.dateDir)
      dirs.add(path.dirname(this.partPath(key, 0)))
      dirs.add(path.join(this.dir, bigfileDirIn(layout, key.dateDir, this.settings.bigfilesPrefix)))
    }
    return removeStaleTemps([...dirs], STALE_TEMP_MS)
  }

  async existingParts(plan: KeyPlan): Promise<ShardReader[]> {
    const readers: ShardReader[] = []
    for (let part = 0; ; part++) {
      const file = this.partPath(plan, part)
      if (sizeOf(file) === null) return readers
      readers.push(await ShardReader.open(file))
    }
  }

  async writePart(plan: KeyPlan, part: number, items: PlannedInput[], maxShardSize: number | undefined, ctx: FillContext): Promise<PartWrite> {
    const file = this.partPath(plan, part)
    // A part staged earlier in this run holds the shard's turn: commit it first.
    if (this.group.holds(file)) await this.group.commit()
    // Whether the part exists matters only against a limit (a stat per part is
    // a stall on a busy disk). Whether it is full is decided by the writer,
    // holding the part's turn: its file size may count another run's append
    // in flight (whose uids its index does not show yet) or the tail of an
    // interrupted one (which the writer cuts off).
    const size = maxShardSize === undefined ? null : sizeOf(file)
    const task: PartTask = { plan, part, file, size, items, maxShardSize, ctx }
    if (batchable(items, ctx)) return this.writeInBatch(task)
    // Large parts one writer each, a few at a time (their chunks are large).
    const release = await this.writers.take(1)
    try {
      return await this.writeOne(task)
    } finally {
      release()
    }
  }

  /** A part through its own writer: filled chunk by chunk, then staged into the commit group. */
  private async writeOne({ plan, part, file, size, items, maxShardSize, ctx }: PartTask): Promise<PartWrite> {
    const options = { ...this.writerOptions, replace: Boolean(ctx.replace), skipExisting: Boolean(ctx.skipExisting), ...this.bigfilesDir(plan) }
    // Waiting for a turn while this run's group holds others could wait for
    // ever (another run waiting for those): try, and wait only once the
    // group is committed.
    let writer = await ShardWriter.tryAppend(file, options)
    if (!writer) {
      await this.group.commit()
      writer = await ShardWriter.append(file, options)
    }
    let fill: FillResult
    try {
      fill = await fillWriter(writer, items, maxShardSize, ctx)
    } catch (err) {
      writer.abort()
      throw err
    }
    if (fill.added.length === 0) {
      writer.abort()
      return { fill, done: Promise.resolve(null) }
    }
    // Stored with its group (their syncs overlapping); reported once committed.
    // A new part is created at once: if another run created it meanwhile with
    // no room for these files, they go on to the next part instead.
    let committed: Promise<ShardWriteSummary>
    try {
      committed = (await this.group.stage(writer, file, fill.added.length)).done
    } catch (err) {
      if (!lostCreateRace(err, size, maxShardSize)) throw err
      ctx.progress(-fill.reportedFiles, -fill.reportedBytes)
      return passOver(await ShardReader.open(file), items, ctx)
    }
    return { fill, done: committed.then((s) => this.packed(plan, part, fill, s)) }
  }

  /** A small part of local files, packed and committed with others (part-batch.ts). */
  private async writeInBatch({ plan, part, file, size, items, maxShardSize, ctx }: PartTask): Promise<PartWrite> {
    const files: PartFiles = {
      path: file,
      ...localArrays(items),
      skipExisting: Boolean(ctx.skipExisting),
      ...(maxShardSize !== undefined ? { maxDataSize: maxShardSize } : {}),
      ...this.bigfilesDir(plan),
    }
    let r = await this.batch.pack(files)
    if (r.busy) {
      // Another writer holds this shard's turn: wait for it alone, holding no other.
      await this.group.commit()
      r = await this.batch.packAlone({ ...files, wait: true })
    }
    if (r.error !== undefined && r.error !== null) {
      const err = decodeError(new Error(r.error))
      if (lostCreateRace(err, size, maxShardSize)) return passOver(await ShardReader.open(file), items, ctx)
      const dup = err instanceof DesError && err.code === 'DES_DUPLICATE' ? items.find((p) => p.input.uid === err.uid) : undefined
      throw dup ? alreadyStored(dup) : withLabel(err, items)
    }
    const skippedAt = new Set(r.skipped)
    const skipped = r.skipped.map((i) => items[i])
    const others = skipped.length > 0 ? items.filter((_, i) => !skippedAt.has(i)) : items
    const fill: FillResult = { added: others.slice(0, r.consumed), skipped, rest: others.slice(r.consumed), reportedFiles: 0, reportedBytes: 0 }
    report(fill, ctx, skipped)
    report(fill, ctx, fill.added)
    return { fill, done: Promise.resolve(r.summary ? this.packed(plan, part, fill, r.summary) : null) }
  }

  /** The writer's BigFile folder when it is not its default, `_bigFiles` beside the shard (right for both layouts: a flat shard sits at the root). */
  private bigfilesDir(plan: KeyPlan): { bigfilesDir?: string } {
    const prefix = this.settings.bigfilesPrefix
    return prefix !== DEFAULT_BIGFILES_PREFIX ? { bigfilesDir: path.join(this.dir, bigfileDirIn(this.settings.layout ?? 'nested', plan.dateDir, prefix)) } : {}
  }

  /**
   * What the run reports of a stored part. uids the part already held when
   * it landed (another run created it first and stored them: skipped) move
   * from `fill.added` to `fill.skipped`; null when none of its files is ours.
   */
  private packed(plan: KeyPlan, part: number, fill: FillResult, s: ShardWriteSummary): PackedShard | null {
    if (s.skipped.length > 0) {
      const theirs = new Set(s.skipped)
      fill.skipped.push(...fill.added.filter((p) => theirs.has(p.input.uid)))
      fill.added = fill.added.filter((p) => !theirs.has(p.input.uid))
      if (fill.added.length === 0) return null
    }
    return {
      key: shardKeyIn(this.settings.layout ?? 'nested', plan, part),
      files: fill.added.length,
      uids: fill.added.map((p) => p.input.uid),
      bytesIn: s.bytesIn,
      bytesStored: s.bytesStored + s.bigfileBytesWritten,
    }
  }
}
