// Planning a run of any size. Every input is checked and routed once, as the
// manifest streams by, and grouped by (date, shard) key in manifest order;
// uids are checked for duplicates across the whole manifest.
//
// Up to `memoryEntries` inputs, and `memoryBytes` of their manifest text, all
// of this stays in memory (a migration batch, a small manifest). Past either
// it spills: each input becomes one compact line
// in one of up to 1,024 temp files (buckets, by its key, so a key's inputs
// stay together and in order), and each uid a line in one of up to 256 uid
// parts (by a hash of
// the uid, so two copies of a uid meet in the same file, which is checked
// alone). Memory then holds one bucket or one uid part at a time, plus a
// small record per key: it stays flat in the manifest's size.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { DesError } from '../errors'
import { DEFAULT_MEMORY_BYTES, DEFAULT_MEMORY_ENTRIES } from '../config/defaults'
import type { Layout } from '../config/env'
import { isS3Url, parseS3Url } from '../storage/s3-url'
import { locateIn, locateManyIn } from '../store/layout'
import { statSources, type Prefetch, type ShardRoute } from '../native'
import type { PackInput, WorkerSlice } from './types'
import type { ManifestEntry } from './manifest'
import { named, type KeyPlan, type PlannedInput } from './plan'
import { checkSources } from './sources'
import type { S3SourceOptions } from './types'
import { hasLoneSurrogate, MAX_UID_BYTES, uidBytesOverLimit } from '../store/uid'
import { makeTempDirSync, removeTempDirSync } from '../temp-dir'

export type { WorkerSlice }

export { DEFAULT_MEMORY_BYTES, DEFAULT_MEMORY_ENTRIES }
/** Spill files per plan: about this many inputs (and bytes of their manifest text) per bucket, this many uids per part. */
const BUCKET_INPUTS = 4096
const BUCKET_BYTES = 16 * 1024 * 1024
const PART_UIDS = 16384
const MAX_BUCKETS = 1024
const MAX_UID_PARTS = 256
/** Bytes of lines a spill file gathers before one write. */
const FLUSH_BYTES = 8 * 1024


export interface PlanSettings {
  nBits: number
  /** Whose date rule routes the inputs: nested (UTC date, default) or flat (the date as written). */
  layout?: Layout
  worker?: WorkerSlice
  /** Inputs held in memory before spilling (default DEFAULT_MEMORY_ENTRIES). */
  memoryEntries?: number
  /** Bytes of their manifest text held in memory before spilling (default DEFAULT_MEMORY_BYTES). */
  memoryBytes?: number
  /** Where spill files go (default the OS temp dir). */
  tmpDir?: string
  /**
   * About how many entries are coming (an array's length, a manifest's size
   * over ~100 bytes): sizes the spill files. Unknown = as for the largest.
   */
  expectedEntries?: number
  /** Where local sources of a manifest's batches are queued to be read ahead (while the plan is in memory). */
  prefetch?: Prefetch
}

/** A power of two near `n / per`, within 1..max. */
function spillCount(expected: number | undefined, per: number, max: number): number {
  if (expected === undefined || !Number.isFinite(expected)) return max
  let n = 1
  while (n < max && n * per < expected) n *= 2
  return n
}

/** One (date, shard) key of the plan. */
export interface KeyInfo {
  dateDir: string
  shardHex: string
  shardIndex: number
  /** Order of first appearance in the manifest. */
  ordinal: number
  files: number
  /** Bytes of its sources (known after Plan.checkSources). */
  bytes: number
  /** Bytes of its entries' manifest text (0 for inputs given as an array): about what its inputs hold in memory. */
  entryBytes: number
  /** Set by the pre-pass: parts the key already has, and whether any input is among them. */
  parts: number
  hits: boolean
}

/** The first input (in manifest order) that routes to a shard index, and where that index's key is. */
export interface IndexFirst {
  uid: string
  label: string
  dateDir: string
  shardHex: string
}

/**
 * Lines appended to a set of temp files, one append per FLUSH_BYTES (no file
 * is held open: hundreds of them would press on the open-file limit).
 */
class SpillFiles {
  private readonly pending: string[][] = []
  private readonly pendingBytes: number[] = []

  constructor(
    private readonly dir: string,
    private readonly name: string,
    readonly count: number,
  ) {
    for (let i = 0; i < count; i++) {
      fs.writeFileSync(this.file(i), '')
      this.pending.push([])
      this.pendingBytes.push(0)
    }
  }

  file(i: number): string {
    return path.join(this.dir, `${this.name}-${i}.jsonl`)
  }

  append(i: number, line: string): void {
    this.pending[i].push(line)
    this.pendingBytes[i] += line.length + 1
    if (this.pendingBytes[i] >= FLUSH_BYTES) this.flushOne(i)
  }

  private flushOne(i: number): void {
    if (this.pending[i].length === 0) return
    fs.appendFileSync(this.file(i), this.pending[i].join('\n') + '\n')
    this.pending[i] = []
    this.pendingBytes[i] = 0
  }

  /** Writes out what is pending (reading comes after). */
  flush(): void {
    for (let i = 0; i < this.count; i++) this.flushOne(i)
  }

  lines(i: number): string[] {
    const text = fs.readFileSync(this.file(i), 'utf8')
    return text === '' ? [] : text.slice(0, -1).split('\n')
  }

  rewrite(i: number, lines: string[]): void {
    const tmp = `${this.file(i)}.new`
    fs.writeFileSync(tmp, lines.length ? lines.join('\n') + '\n' : '')
    fs.renameSync(tmp, this.file(i))
  }
}

/** 32-bit FNV-1a of a string's UTF-16 units: which uid part a uid goes to. */
function hashUid(uid: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < uid.length; i++) h = Math.imul(h ^ uid.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/** A uid given twice: the first and the second occurrence. */
interface Duplicate {
  uid: string
  first: string
  second: string
  /** Position of the second occurrence in the manifest. */
  index: number
}

function duplicateError(d: Duplicate): DesError {
  return new DesError('DES_DUPLICATE', `duplicate uid ${JSON.stringify(d.uid)}: ${d.first} and ${d.second}`)
}

/** Duplicate uids, in memory while small, else by hash partition on disk. */
class UidCheck {
  private seen: Map<string, string> | null = new Map()
  private parts?: SpillFiles

  /** Returns the first occurrence's label when it is known now (in memory). */
  add(uid: string, index: number, label: string): string | undefined {
    if (this.seen) {
      const before = this.seen.get(uid)
      if (before !== undefined) return before
      this.seen.set(uid, label)
      return undefined
    }
    this.parts!.append(hashUid(uid) % this.parts!.count, JSON.stringify([uid, index, label]))
    return undefined
  }

  get spilled(): boolean {
    return this.parts !== undefined
  }

  spill(dir: string, count: number): void {
    this.parts = new SpillFiles(dir, 'uids', count)
    // No duplicates among these (they were refused as they came), so their order does not matter.
    for (const [uid, label] of this.seen!) this.parts.append(hashUid(uid) % count, JSON.stringify([uid, -1, label]))
    this.seen = null
  }

  /** The duplicate whose second occurrence comes first in the manifest, among those before `before`. */
  firstDuplicate(before = Infinity): Duplicate | null {
    if (!this.parts) return null
    this.parts.flush()
    let found: Duplicate | null = null
    for (let p = 0; p < this.parts.count; p++) {
      const firsts = new Map<string, string>()
      for (const line of this.parts.lines(p)) {
        const [uid, index, label] = JSON.parse(line) as [string, number, string]
        const first = firsts.get(uid)
        if (first === undefined) firsts.set(uid, label)
        else if (index < before) {
          // Lines are in manifest order: the first duplicate of a part is its earliest.
          if (!found || index < found.index) found = { uid, first, second: label, index }
          break
        }
      }
    }
    return found
  }
}

/**
 * The plan of a run: its keys (in the order they are written), and each key's
 * inputs in manifest order, loaded a bucket at a time.
 */
export class Plan {
  /** Bytes of all planned sources (known after checkSources). */
  bytes = 0
  private cache = new Map<number, Promise<Map<number, PlannedInput[]>>>()

  constructor(
    /** Keys in write order: by bucket, then by first appearance. */
    readonly keys: KeyInfo[],
    /** Inputs this process packs. */
    readonly files: number,
    /** Inputs in the manifest (all workers). */
    readonly total: number,
    /**
     * Whether the manifest names an s3:// source, in any worker's keys: the
     * settings of the S3 source client are then checked by every worker, as
     * one process checks them, not only by those that read such a source.
     */
    readonly anyS3: boolean,
    private readonly mem: PlannedInput[] | null,
    private readonly buckets: SpillFiles | undefined,
    private readonly byOrdinal: KeyInfo[],
    /**
     * Every shard index the manifest routes to, every worker's (at most
     * 2^n_bits), with the first input that does: a target that cannot hold
     * one fails every worker, not only the one that would write it.
     */
    readonly indexes: ReadonlyMap<number, IndexFirst>,
    /** Local sources stat'ed while the plan was made (in memory only). */
    private readonly early: EarlyStats[] = [],
  ) {}

  /** True when the plan is in temp files. */
  get spilled(): boolean {
    return this.buckets !== undefined
  }

  bucketOf(key: KeyInfo): number {
    return this.buckets ? key.ordinal % this.buckets.count : 0
  }

  private parse(line: string): PlannedInput {
    const [index, label, uid, createdAt, source, sizeBytes, meta, ordinal, size, etag] = JSON.parse(line) as [
      number,
      string,
      string,
      string,
      string,
      number | null,
      Record<string, unknown> | null,
      number,
      number,
      string | null,
    ]
    const key = this.byOrdinal[ordinal]
    const input: PackInput = { uid, createdAt, source, ...(sizeBytes !== null ? { sizeBytes } : {}), ...(meta ? { meta } : {}), ...(etag !== null ? { etag } : {}) }
    const item: WithOrdinal = { input, index, label, dateDir: key.dateDir, shardHex: key.shardHex, size, onS3: isS3(source) }
    item[ORDINAL] = ordinal
    return item
  }

  /** The inputs of one bucket, by key ordinal. */
  private load(bucket: number): Promise<Map<number, PlannedInput[]>> {
    let p = this.cache.get(bucket)
    if (!p) {
      p = (async () => {
        const byKey = new Map<number, PlannedInput[]>()
        const items = this.buckets ? this.buckets.lines(bucket).map((l) => this.parse(l)) : this.mem!
        for (const item of items) {
          const ordinal = ordinalOf(item)
          let list = byKey.get(ordinal)
          if (!list) byKey.set(ordinal, (list = []))
          list.push(item)
        }
        return byKey
      })()
      this.cache.set(bucket, p)
    }
    return p
  }

  /** A key's inputs in manifest order. Buckets before this key's are let go. */
  async items(key: KeyInfo): Promise<PlannedInput[]> {
    const bucket = this.bucketOf(key)
    for (const b of this.cache.keys()) if (b < bucket) this.cache.delete(b)
    return (await this.load(bucket)).get(key.ordinal) ?? []
  }

  /** A key and its inputs, as the targets take them. */
  async keyPlan(key: KeyInfo): Promise<KeyPlan> {
    return { dateDir: key.dateDir, shardHex: key.shardHex, items: await this.items(key) }
  }

  /**
   * Checks every source (see checkSources), a bucket at a time, and learns
   * the sizes the manifest left out (kept in the bucket file when spilled).
   */
  async checkSources(s3: S3SourceOptions | undefined, checkedByCaller = false): Promise<void> {
    const count = this.buckets?.count ?? 1
    for (let b = 0; b < count; b++) {
      // In memory the inputs are in manifest order already (and stay grouped for the writing).
      const items = this.mem ?? [...(await this.load(b)).values()].flat().sort((x, y) => x.index - y.index)
      const unknown = items.some((p) => p.size < 0)
      // The caller (des migrate) checked every source and gave its size: not checked twice.
      if (checkedByCaller) for (const p of items) p.size = p.input.sizeBytes!
      else await checkSources(items, s3, await stated(this.early))
      for (const p of items) {
        this.bytes += p.size
        this.byOrdinal[ordinalOf(p)].bytes += p.size
      }
      if (this.buckets) {
        if (unknown) this.buckets.rewrite(b, items.map(spillLine))
        this.cache.delete(b)
      }
    }
  }
}

/** A batch of local sources stat'ed as it was planned: their `statSources` codes, null if that call failed. */
interface EarlyStats {
  items: PlannedInput[]
  stats: Promise<number[] | null>
}

/** What the early stats found, by input (those whose call failed are checked again). */
async function stated(early: EarlyStats[]): Promise<Map<PlannedInput, number> | undefined> {
  if (early.length === 0) return undefined
  const found = new Map<PlannedInput, number>()
  for (const { items, stats } of early) {
    const codes = await stats
    if (codes) items.forEach((p, i) => found.set(p, codes[i]))
  }
  return found
}

const ORDINAL = Symbol('ordinal')
type WithOrdinal = PlannedInput & { [ORDINAL]?: number }

function ordinalOf(item: PlannedInput): number {
  return (item as WithOrdinal)[ORDINAL]!
}

/** s3://… (anything after the scheme; a malformed one is refused when sources are checked). */
function isS3(source: string): boolean {
  return source.length > 5 && isS3Url(source)
}

function spillLine(p: PlannedInput): string {
  const i = p.input
  return JSON.stringify([p.index, p.label, i.uid, i.createdAt, i.source, i.sizeBytes ?? null, i.meta ?? null, ordinalOf(p), p.size, i.etag ?? null])
}

/** Checks, routes and groups inputs as they come; see the module comment. */
export class Planner {
  private readonly keys = new Map<string, KeyInfo>()
  private readonly byOrdinal: KeyInfo[] = []
  private readonly indexes = new Map<number, IndexFirst>()
  private mem: PlannedInput[] | null = []
  private buckets?: SpillFiles
  private readonly uids = new UidCheck()
  /**
   * Local sources of each batch, stat'ed on Rust threads while the next
   * batch is read and planned (the checks before writing then wait for
   * little); given up when the plan spills (it checks a bucket at a time).
   */
  private early: EarlyStats[] | null = []
  private dir?: string
  private total = 0
  private files = 0
  private anyS3 = false
  private readonly memoryEntries: number
  private readonly memoryBytes: number
  /** Bytes of manifest text of the inputs in `mem`. */
  private memBytes = 0

  constructor(private readonly settings: PlanSettings) {
    this.memoryEntries = settings.memoryEntries ?? DEFAULT_MEMORY_ENTRIES
    this.memoryBytes = settings.memoryBytes ?? DEFAULT_MEMORY_BYTES
  }

  /**
   * Plans every entry. The first problem in manifest order is the one
   * thrown: a bad entry, or a uid whose second occurrence comes before it.
   */
  async run(entries: Iterable<ManifestEntry> | AsyncIterable<ManifestEntry | ManifestEntry[]>): Promise<Plan> {
    try {
      for await (const e of entries) {
        if (Array.isArray(e)) this.addBatch(e)
        else this.add(e.input, e.label, undefined, e.bytes)
      }
    } catch (err) {
      const dup = this.uids.spilled ? this.uids.firstDuplicate(this.total) : null
      throw dup ? duplicateError(dup) : err
    }
    const dup = this.uids.firstDuplicate()
    if (dup) throw duplicateError(dup)
    this.buckets?.flush()
    const n = this.buckets?.count ?? 1
    const order = n > 1 ? [...this.byOrdinal].sort((a, b) => (a.ordinal % n) - (b.ordinal % n) || a.ordinal - b.ordinal) : this.byOrdinal
    return new Plan(
      order.filter((k) => k.files > 0),
      this.files,
      this.total,
      this.anyS3,
      this.mem,
      this.buckets,
      this.byOrdinal,
      this.indexes,
      this.early ?? [],
    )
  }

  /** A manifest's batch: routed in one call, then added one by one. */
  private addBatch(batch: ManifestEntry[]): void {
    const routes = locateManyIn(
      this.settings.layout ?? 'nested',
      batch.map((e) => String(e.input.uid)),
      batch.map((e) => String(e.input.createdAt)),
      this.settings.nBits,
    )
    const local: PlannedInput[] = []
    batch.forEach((e, i) => {
      const item = this.add(e.input, e.label, routes[i] ?? undefined, e.bytes)
      if (item && !item.onS3) local.push(item)
    })
    if (this.early && local.length > 0) {
      this.early.push({ items: local, stats: statSources(local.map((p) => p.input.source)).catch(() => null) })
      this.readAhead(local)
    }
  }

  /** Queues the sources whose size the manifest gives to be read ahead (the others are read when written). */
  private readAhead(local: PlannedInput[]): void {
    const prefetch = this.settings.prefetch
    if (!prefetch) return
    const sized = local.filter((p) => p.input.sizeBytes !== undefined)
    prefetch.add(
      sized.map((p) => p.input.uid),
      sized.map((p) => p.input.source),
      sized.map((p) => p.input.sizeBytes!),
    )
  }

  /**
   * Plans one input; `route`, when given, is its route (else it is routed
   * here, or fails with why); `bytes`, the bytes of its manifest text.
   * Returns it, unless it is another worker's.
   */
  private add(input: PackInput, where: string, route?: ShardRoute, bytes = 0): PlannedInput | undefined {
    if (this.mem && (this.total >= this.memoryEntries || this.memBytes >= this.memoryBytes)) this.spill()
    const index = this.total
    if (typeof input?.uid !== 'string' || input.uid === '') throw new DesError('DES_BAD_ARG', `${where}: uid must be a non-empty string`)
    // Refused here, before anything is written (the writer would refuse it after the shards before it), and not echoed: it may be megabytes.
    const uidBytes = uidBytesOverLimit(input.uid)
    if (uidBytes !== undefined) throw new DesError('DES_BAD_ARG', `${where}: uid of ${uidBytes} bytes is longer than the ${MAX_UID_BYTES} a shard can hold`)
    const p = () => named({ input, label: where })
    // Such a string reaches Rust with U+FFFD in place of each lone half, so
    // two different uids (or paths) would be one there.
    if (hasLoneSurrogate(input.uid)) throw new DesError('DES_BAD_ARG', `${p()}: uid is not valid Unicode (a lone UTF-16 surrogate)`)
    if (typeof input.source !== 'string' || input.source === '') throw new DesError('DES_BAD_ARG', `${p()}: source must be a local path or s3://bucket/key`)
    if (hasLoneSurrogate(input.source)) throw new DesError('DES_BAD_ARG', `${p()}: source is not valid Unicode (a lone UTF-16 surrogate)`)
    // Refused here, from the manifest alone, not when sources are checked:
    // those checks are of this worker's keys only, and every worker must
    // refuse the manifest as one process does, before any writes.
    if (input.source.includes('\0')) throw new DesError('DES_BAD_ARG', `${p()}: source holds a NUL character, which no path or key can`)
    if (isS3Url(input.source) && parseS3Url(input.source) === null) throw new DesError('DES_BAD_ARG', `${p()}: source ${input.source} is not s3://bucket/key`)
    if (input.sizeBytes !== undefined && !(Number.isSafeInteger(input.sizeBytes) && input.sizeBytes >= 0)) {
      throw new DesError('DES_BAD_ARG', `${p()}: sizeBytes must be a whole number of bytes, got ${input.sizeBytes}`)
    }
    const before = this.uids.add(input.uid, index, where)
    if (before !== undefined) throw duplicateError({ uid: input.uid, first: before, second: where, index })
    let loc: ShardRoute | undefined = input.location ?? route
    if (!loc) {
      try {
        loc = locateIn(this.settings.layout ?? 'nested', input.uid, String(input.createdAt), this.settings.nBits)
      } catch (err) {
        throw new DesError('DES_BAD_ARG', `${p()}: created_at ${JSON.stringify(input.createdAt)}: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
    this.total++
    if (!this.indexes.has(loc.shardIndex)) this.indexes.set(loc.shardIndex, { uid: input.uid, label: where, dateDir: loc.dateDir, shardHex: loc.shardHex })
    const onS3 = isS3(input.source)
    if (onS3) this.anyS3 = true
    const worker = this.settings.worker
    if (worker && loc.shardIndex % worker.count !== worker.index) return undefined
    const name = `${loc.dateDir}/${loc.shardHex}`
    let key = this.keys.get(name)
    if (!key) {
      key = { dateDir: loc.dateDir, shardHex: loc.shardHex, shardIndex: loc.shardIndex, ordinal: this.byOrdinal.length, files: 0, bytes: 0, entryBytes: 0, parts: 0, hits: false }
      this.keys.set(name, key)
      this.byOrdinal.push(key)
    }
    key.files++
    key.entryBytes += bytes
    this.files++
    const item: WithOrdinal = { input, index, label: where, dateDir: loc.dateDir, shardHex: loc.shardHex, size: input.sizeBytes ?? -1, onS3 }
    item[ORDINAL] = key.ordinal
    if (this.mem) {
      this.mem.push(item)
      this.memBytes += bytes
    } else this.buckets!.append(key.ordinal % this.buckets!.count, spillLine(item))
    return item
  }

  private spill(): void {
    this.dir = makeTempDirSync('des-pack-plan-', this.settings.tmpDir)
    const expected = this.settings.expectedEntries
    // Entries as large as those held so far would make buckets of how many bytes.
    const expectedBytes = expected !== undefined && this.mem!.length > 0 ? (expected * this.memBytes) / this.mem!.length : undefined
    const count = Math.max(spillCount(expected, BUCKET_INPUTS, MAX_BUCKETS), this.memBytes > 0 ? spillCount(expectedBytes, BUCKET_BYTES, MAX_BUCKETS) : 1)
    const buckets = (this.buckets = new SpillFiles(this.dir, 'plan', count))
    for (const item of this.mem!) buckets.append(ordinalOf(item) % buckets.count, spillLine(item))
    this.mem = null
    this.early = null
    this.settings.prefetch?.stop()
    if (!this.uids.spilled) this.uids.spill(this.dir, spillCount(expected, PART_UIDS, MAX_UID_PARTS))
  }

  /** Removes the temp files, if any. */
  dispose(): void {
    if (this.dir) removeTempDirSync(this.dir)
    this.dir = undefined
  }
}
