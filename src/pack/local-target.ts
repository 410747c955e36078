// Packing into a local store: `<dir>/<date>/<HEX>[.<part>].des`, BigFiles in
// `<dir>/<date>/<prefix>/`. The Rust writer does the hard part: it takes its
// turn on the part (a lock on the shard file itself, no lock file in the
// store) so concurrent runs never lose each other's files, stages the new
// payloads in a temp file beside it (never named `.des`), and then creates
// the part with a rename or appends to it in place (docs/FORMAT.md,
// Appending); parts are made durable in groups (commit-group.ts).

import { promises as fsp, statSync } from 'node:fs'
import * as path from 'node:path'
import { DEFAULT_BIGFILES_PREFIX } from '../config/defaults'
import { DesError } from '../errors'
import { ShardReader, ShardWriter, type ShardWriteSummary } from '../native'
import { CommitGroup } from './commit-group'
import { bigfileDirIn, shardKeyIn } from '../store/layout'
import { fillWriter, type FillContext, type FillResult, type WriterSettings } from './fill'
import type { KeyPlan, PlannedInput } from './plan'
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
  /**
   * Present when parts are stored in groups: a part's `done` then resolves
   * only when its group is committed, and this commits what is left (the run
   * calls it once no more parts come).
   */
  flush?(): Promise<void>
}

/** The part was not touched: everything is left for the next one. */
export function untouched(items: PlannedInput[]): PartWrite {
  return { fill: { added: [], skipped: [], rest: items, reportedFiles: 0, reportedBytes: 0 }, done: Promise.resolve(null) }
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

export class LocalTarget implements ShardSink {
  private readonly group = new CommitGroup()

  constructor(
    readonly dir: string,
    private readonly settings: WriterSettings,
  ) {}

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
      await fsp.mkdir(this.dir, { recursive: true })
      await fsp.access(this.dir, fsp.constants.W_OK)
    } catch (err) {
      throw new DesError('DES_IO', `output dir ${this.dir} is not writable: ${(err as Error).message}`)
    }
  }

  partPath(plan: KeyPlan, part: number): string {
    return path.join(this.dir, shardKeyIn(this.settings.layout ?? 'nested', plan, part))
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
    const size = sizeOf(file)
    if (maxShardSize !== undefined && size !== null && size >= maxShardSize) return untouched(items)
    const prefix = this.settings.bigfilesPrefix
    const writer = await ShardWriter.append(file, {
      ...this.settings.writer,
      replace: Boolean(ctx.replace),
      // The writer's default is `_bigFiles` beside the shard: right for both layouts (a flat shard sits at the root).
      ...(prefix !== DEFAULT_BIGFILES_PREFIX ? { bigfilesDir: path.join(this.dir, bigfileDirIn(this.settings.layout ?? 'nested', plan.dateDir, prefix)) } : {}),
    })
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
    // Stored with its group (one sync for many parts); reported once committed.
    // A new part is created at once: if another run created it meanwhile with
    // no room for these files, they go on to the next part instead.
    let committed: Promise<ShardWriteSummary>
    try {
      committed = (await this.group.stage(writer, file)).done
    } catch (err) {
      if (!(err instanceof DesError && err.code === 'DES_CHANGED' && size === null && maxShardSize !== undefined)) throw err
      ctx.progress(-fill.reportedFiles, -fill.reportedBytes)
      return untouched(items)
    }
    const done = committed.then((s) => ({
      key: shardKeyIn(this.settings.layout ?? 'nested', plan, part),
      files: fill.added.length,
      uids: fill.added.map((p) => p.input.uid),
      bytesIn: s.bytesIn,
      bytesStored: s.bytesStored,
    }))
    return { fill, done }
  }
}
