// One migration cycle (SPEC §10, issue 5), each step a function:
//   1 selectRows      claim up to batch_size unarchived rows older than the cutoff
//   2 validateRows    each source exists with the size the row claims; bad rows are reported, not marked
//   3 packRows        lock the (date, shard) keys, skip what is stored already, one append per key
//   4 verifyStored    re-read every touched shard's index: each uid must be there with its size,
//                     and its stored bytes must read back and check out (checksum, decode)
//   5 markArchived    exactly the verified rows, in the cycle's one transaction
//   6 deleteSources   optional, after the commit, only of rows marked and verified
// Steps 1-5 share one transaction: its row locks are the claim, and a crash
// anywhere before the commit rolls the claim back, leaving the rows to the next
// run (which finds already-stored uids and skips them: see docs/MIGRATION.md).

import type { Knex } from 'knex'
import { createHash } from 'node:crypto'
import type { S3Client } from '@aws-sdk/client-s3'
import { performance } from 'node:perf_hooks'
import { locateShard } from '../native'
import { DesError, classifyError, describe } from '../errors'
import type { FaultPoint, MigrateConfig } from '../config/migrate'
import { hasLoneSurrogate, MAX_UID_BYTES, uidBytesOverLimit } from '../store/uid'
import type { Layout } from '../config/env'
import { shardKeyIn } from '../store/layout'
import type { ByteSource, ShardSources } from '../storage/source'
import type { ShardHandle } from '../store/shard'
import { runPack, type PackInput, type PackOptions, type PackResult, type PackTarget } from '../pack'
import { MAX_LOCATION_BYTES, pgTimestampToIso, rowKey, SHOWN_CHARS, type Cutoff, type SourceRow, type SourceTable } from './db'
import { changedSince, checkLocations, deleteSource, localFileSeen, mapLimit, openLocation, parseLocation, type SourceRef } from './sources'
import { findStored, openKeys, readBack } from './verify'
import { FolderKeys, ofTheStore, StoreLinks } from './store-guard'

/** Everything a cycle works with, built once from the config. */
export interface CycleDeps {
  config: MigrateConfig
  table: SourceTable
  /** Where shards are written ... */
  target: PackTarget
  /** ... and the same store, read back (with zones, each key from its zone). */
  store: ByteSource | ShardSources
  /** Names the store in advisory locks: migrators writing one store share them. */
  lockNamespace: string
  /** Client for s3:// sources (when packer.s3_source.enabled). */
  sourceS3?: S3Client
  /** Tests only: SIGKILL ourselves at this point. */
  fault?: FaultPoint
  /** One line per notable event (bad rows, deletions that failed). */
  log?: (line: string) => void
}

/** A row that was not migrated, and why. */
export interface BadRow {
  uid: string | null
  /** Physical row id, for rows without a usable uid. */
  ctid: string
  reason: string
}

/** A row whose source checked out. */
export interface GoodRow {
  ctid: string
  /** The partition holding the row (SourceRow.tableoid). */
  tableoid: string
  uid: string
  createdAt: string
  size: number
  location: string
  source: SourceRef
  dateDir: string
  shardHex: string
  /** The row's shard index (routed once, in checkRow; the packer takes it as is). */
  shardIndex: number
  /** An S3 source's ETag when it was checked: another one before its deletion means it was overwritten since. */
  etag?: string
  /** A local source's device and inode when it was checked: another file at its path before its deletion is not the one read. */
  fileId?: string
  /** A local source's mtime and ctime when it was checked: others before its deletion mean it was changed since. */
  fileTimes?: string
}

/** Seconds spent per kind of work (the benchmark's split). */
export interface CycleTimings {
  /** select, advisory locks, mark, commit, pending count. */
  database: number
  /** stat/HEAD of every source (step 2). */
  sourceChecks: number
  /** Index reads before packing (what is stored already). */
  precheck: number
  /** packFiles: source reads, compression, writing, fsync/upload. */
  pack: number
  /** Index re-reads after packing (step 4). */
  verify: number
  deleteSources: number
  total: number
}

export interface CycleReport {
  dryRun: boolean
  status: 'success' | 'error'
  selected: number
  bad: BadRow[]
  /** Rows whose uid was in its shard already with the same size (a rerun after a crash). */
  alreadyStored: number
  /** Files the packer wrote in this cycle. */
  packedFiles: number
  /** Rows marked archived (or, dry run, that would be). */
  migrated: number
  bytes: number
  /** Shard objects written (or, dry run, that would be). */
  shardKeys: string[]
  /**
   * Rows the cycle went through, bad ones included: `selected` once its
   * transaction committed, 0 when it rolled back (those rows wait for the next
   * cycle) and in a dry run. What des_migration_files_total counts, as the
   * reference counts the rows it processed.
   */
  processed: number
  deleted: number
  deleteErrors: BadRow[]
  /** Archived rows whose source was not deleted: a row not archived yet names the same file. */
  sourcesKept: BadRow[]
  /**
   * Rows older than the cutoff not archived yet as the cycle began, bad ones
   * included (des_migration_pending_files, measured when the reference
   * measures it); undefined when that count failed, which does not stop the cycle.
   */
  pendingBefore?: number
  /** The same count after the cycle (what `des migrate` reports). */
  pending?: number
  error?: string
  /**
   * With `status: 'error'`: the code of what failed (`DES_UNAVAILABLE` for an
   * unreachable database or store, `DES_CORRUPT` when stored rows did not read
   * back...), which `des migrate` exits by.
   */
  errorCode?: string
  timings: CycleTimings
}

export class Clock {
  readonly t: CycleTimings = { database: 0, sourceChecks: 0, precheck: 0, pack: 0, verify: 0, deleteSources: 0, total: 0 }
  async time<T>(what: Exclude<keyof CycleTimings, 'total'>, work: () => Promise<T>): Promise<T> {
    const start = performance.now()
    try {
      return await work()
    } finally {
      this.t[what] += (performance.now() - start) / 1000
    }
  }
}

/** Tests only: dies here, as kill -9 would, when DES_TEST_FAULT names this point. */
export function faultPoint(deps: Pick<CycleDeps, 'fault'>, point: FaultPoint): void {
  if (deps.fault === point) process.kill(process.pid, 'SIGKILL')
}

export function cutoffOf(config: MigrateConfig): Cutoff {
  return { ageDays: config.migration.archiveAgeDays }
}

/** Step 1: up to `limit` rows, claimed (`lock`) or only looked at (dry run), none of `exclude`. */
export function selectRows(deps: CycleDeps, trx: Knex.Transaction, lock: boolean, limit: number, exclude: string[] = []): Promise<SourceRow[]> {
  return deps.table.selectBatch(trx, cutoffOf(deps.config), limit, lock, exclude)
}

/** Bad rows are never marked, so they stay first in line; a cycle looks past at most this many batches of them. */
const BAD_ROW_BATCHES = 10

/**
 * Steps 1 and 2 together: select, validate, and select again past the bad
 * rows found, until `batch_size` good rows or nothing is left, so bad rows
 * at the head of the table cannot stall the migration behind them.
 */
export async function claimBatch(
  deps: CycleDeps,
  trx: Knex.Transaction,
  lock: boolean,
  clock: Clock,
): Promise<{ selected: number; good: GoodRow[]; bad: BadRow[] }> {
  const batchSize = deps.config.migration.batchSize
  const seen: string[] = []
  const good: GoodRow[] = []
  const bad: BadRow[] = []
  // A walk of the whole store's folders: once for the cycle, however many selects it takes to fill the batch.
  let links: Promise<StoreLinks> | undefined
  const storeLinks = () => (links ??= StoreLinks.collect(deps.store, deps.config.packer))
  while (good.length < batchSize && bad.length < BAD_ROW_BATCHES * batchSize) {
    const limit = batchSize - good.length
    const rows = await clock.time('database', () => selectRows(deps, trx, lock, limit, seen))
    if (rows.length === 0) break
    for (const r of rows) seen.push(rowKey(r))
    const v = await clock.time('sourceChecks', () => validateRows(deps, rows, good, storeLinks))
    good.push(...v.good)
    bad.push(...v.bad)
    if (rows.length < limit) break
  }
  return { selected: seen.length, good, bad }
}

/**
 * The part of step 2 that needs no I/O: the row's own values. `layout` dates
 * the row (nested: its UTC date; flat: the date as the reference dated it);
 * without a size column (`sizeFromSource`) the size is -1 until the source is seen.
 */
export function checkRow(row: SourceRow, nBits: number, opts: { layout?: Layout; sizeFromSource?: boolean } = {}): { good: Omit<GoodRow, 'size'> & { size: number } } | { bad: BadRow } {
  const bad = (reason: string) => ({ bad: { uid: row.uid, ctid: row.ctid, reason } })
  if (row.uid === null || row.uid === '') return bad('uid is NULL or empty')
  const uidBytes = row.uidBytes ?? uidBytesOverLimit(row.uid)
  if (uidBytes !== undefined) {
    // Reported by its first characters: the ctid finds the row.
    return { bad: { uid: `${row.uid.slice(0, SHOWN_CHARS)}…`, ctid: row.ctid, reason: `uid of ${uidBytes} bytes is longer than the ${MAX_UID_BYTES} a shard can hold` } }
  }
  if (hasLoneSurrogate(row.uid)) return bad('uid is not valid Unicode (a lone UTF-16 surrogate)')
  const createdAt = pgTimestampToIso(row.createdAt)
  if (createdAt === null) return bad(row.createdAt === null ? 'created_at is NULL' : `created_at ${JSON.stringify(row.createdAt)} is not a usable timestamp`)
  if (row.location === null || row.location.trim() === '') return bad('file_location is NULL or empty')
  const locationBytes = row.locationBytes ?? (row.location.length > MAX_LOCATION_BYTES / 3 ? Buffer.byteLength(row.location) : 0)
  if (locationBytes > MAX_LOCATION_BYTES) return bad(`file_location of ${locationBytes} bytes is longer than a path or an S3 key can be`)
  const source = parseLocation(row.location)
  if (source === null) return bad(`file_location ${JSON.stringify(row.location)} is not a local path or s3://bucket/key`)
  let size = -1
  if (!opts.sizeFromSource) {
    if (row.sizeBytes === null) return bad('size_bytes is NULL')
    size = Number(row.sizeBytes)
    if (!/^\d+$/.test(row.sizeBytes) || !Number.isSafeInteger(size)) return bad(`size_bytes ${row.sizeBytes} is not a usable size`)
  }
  let loc
  try {
    loc = locateShard(row.uid, createdAt, nBits)
  } catch (err) {
    return bad(`cannot route: ${describe(err)}`)
  }
  if (opts.layout === 'flat' && row.writtenDate !== null && /^\d{8}$/.test(row.writtenDate)) {
    // The packer routes this naive timestamp to the same date as written.
    const w = row.writtenDate
    return { good: { ctid: row.ctid, tableoid: row.tableoid, uid: row.uid, createdAt: `${w.slice(0, 4)}-${w.slice(4, 6)}-${w.slice(6, 8)}T00:00:00`, size, location: row.location, source, dateDir: w, shardHex: loc.shardHex, shardIndex: loc.shardIndex } }
  }
  return { good: { ctid: row.ctid, tableoid: row.tableoid, uid: row.uid, createdAt, size, location: row.location, source, dateDir: loc.dateDir, shardHex: loc.shardHex, shardIndex: loc.shardIndex } }
}

/**
 * Step 2: each row's values and its source (exists, right size). Bad rows do not stop the others.
 * `storeLinks`: the store's links, collected when a local source first needs them (claimBatch shares one collection among its selects).
 */
export async function validateRows(
  deps: CycleDeps,
  rows: SourceRow[],
  earlier: GoodRow[] = [],
  storeLinks = () => StoreLinks.collect(deps.store, deps.config.packer),
): Promise<{ good: GoodRow[]; bad: BadRow[] }> {
  const bad: BadRow[] = []
  const candidates: GoodRow[] = []
  for (const row of rows) {
    const r = checkRow(row, deps.config.packer.nBits, { layout: deps.config.packer.layout, sizeFromSource: deps.config.database.sizeBytesColumn === null })
    if ('bad' in r) bad.push(r.bad)
    else candidates.push(r.good)
  }
  // A uid twice in one batch cannot go into one shard twice; neither row is
  // migrated until the table is fixed (which one is right is not ours to guess).
  // (A uid that was good in an earlier select of this cycle stays good; the later copy is bad.)
  const count = new Map<string, number>()
  for (const c of candidates) count.set(c.uid, (count.get(c.uid) ?? 0) + 1)
  const before = new Set(earlier.map((g) => g.uid))
  const unique = candidates.filter((c) => {
    if (count.get(c.uid)! === 1 && !before.has(c.uid)) return true
    bad.push({ uid: c.uid, ctid: c.ctid, reason: `uid appears more than once among the rows to migrate` })
    return false
  })
  // The store's links: what they point at is the store's too (only local sources can be).
  const links = unique.some((c) => c.source.kind === 'local') ? await storeLinks() : StoreLinks.none
  const folders = new FolderKeys(links)
  const outside = unique.filter((c) => {
    if (!ofTheStore(c.source, deps.store, deps.config.packer, folders)) return true
    bad.push({ uid: c.uid, ctid: c.ctid, reason: `source ${c.location} is a file of the store being written` })
    return false
  })
  const checks = await checkLocations(outside.map((c) => c.source), deps.sourceS3)
  const good: GoodRow[] = []
  outside.forEach((c, i) => {
    const check = checks[i]
    // Which object or file this is, for step 6: one found another there before its deletion was not the one read.
    const local = check.ok && c.source.kind === 'local' ? localFileSeen(c.source.path) : {}
    const seen = { ...(check.ok && check.etag !== undefined ? { etag: check.etag } : {}), ...local }
    if (!check.ok) bad.push({ uid: c.uid, ctid: c.ctid, reason: check.reason })
    else if (c.size < 0) good.push({ ...c, size: check.size, ...seen })
    else if (check.size !== c.size) bad.push({ uid: c.uid, ctid: c.ctid, reason: `size mismatch: source has ${check.size} bytes, size_bytes says ${c.size}` })
    else good.push({ ...c, ...seen })
  })
  return { good, bad }
}

function groupKeys(rows: GoodRow[]): Array<{ dateDir: string; shardHex: string }> {
  const keys = new Map<string, { dateDir: string; shardHex: string }>()
  for (const r of rows) keys.set(`${r.dateDir}/${r.shardHex}`, { dateDir: r.dateDir, shardHex: r.shardHex })
  return [...keys.values()]
}

/**
 * Before packing (keys locked): which rows are stored already with the same
 * size (a rerun after a crash: skipped by the packer, verified like the rest),
 * and which collide with a stored entry of another size (bad rows; packing
 * them would fail the whole batch).
 */
export async function precheckStored(deps: CycleDeps, rows: GoodRow[]): Promise<{ toPack: GoodRow[]; alreadyStored: GoodRow[]; bad: BadRow[]; parts: Map<string, ShardHandle[]> }> {
  const parts = await openKeys(deps.store, groupKeys(rows), 16, deps.config.packer.layout, deps.config.packer.tailBytes)
  const out = { toPack: [] as GoodRow[], alreadyStored: [] as GoodRow[], bad: [] as BadRow[], parts }
  for (const r of rows) {
    const stored = findStored(parts.get(`${r.dateDir}/${r.shardHex}`)!, r.uid)
    if (stored.length === 0) out.toPack.push(r)
    else if (stored.every((s) => s.entry.size === r.size)) out.alreadyStored.push(r)
    else out.bad.push({ uid: r.uid, ctid: r.ctid, reason: `uid already stored in ${stored[0].key} with ${stored[0].entry.size} bytes, source has ${r.size}` })
  }
  return out
}

/**
 * Rows found stored already (a rerun after a crash, or another writer's
 * file under the same uid): the size agreed, but only the bytes say whether
 * it is this row's file. Each is compared with its source, a BigFile by its
 * sha256, an inline file byte by byte; a row whose stored file is another
 * is a bad row, never marked archived, its source never deleted.
 */
export async function sameAsSource(deps: CycleDeps, rows: GoodRow[]): Promise<BadRow[]> {
  if (rows.length === 0) return []
  const parts = await openKeys(deps.store, groupKeys(rows), 16, deps.config.packer.layout, deps.config.packer.tailBytes)
  const bad: BadRow[] = []
  await mapLimit(rows, 8, async (r) => {
    const part = parts.get(`${r.dateDir}/${r.shardHex}`)!.find((p) => p.reader.has(r.uid))
    // Not there any more: step 4 (verify) says so.
    if (!part) return
    const entry = part.reader.entry(r.uid)!
    // The source's sha256 (a BigFile) or bytes (inline), as it is now.
    let read: { sha256: string } | { bytes: Buffer }
    try {
      const source = await openLocation(r.source, deps.sourceS3)
      if (entry.isBigfile) {
        const hash = createHash('sha256')
        for await (const chunk of source as AsyncIterable<Buffer>) hash.update(chunk)
        read = { sha256: hash.digest('hex') }
      } else {
        // A byte past the stored size already tells: a source grown to gigabytes is not read whole.
        const chunks: Buffer[] = []
        let got = 0
        for await (const chunk of source as AsyncIterable<Buffer>) {
          chunks.push(chunk)
          got += chunk.length
          if (got > entry.size) break
        }
        read = { bytes: Buffer.concat(chunks) }
      }
    } catch (err) {
      // Gone or unreadable since its check (step 2): this row waits, as a bad one, and the others go on.
      bad.push({ uid: r.uid, ctid: r.ctid, reason: `cannot read source ${r.location} to compare it with the stored file: ${describe(err)}` })
      return
    }
    const same = 'sha256' in read ? read.sha256 === entry.sha256 : read.bytes.equals(await part.read(r.uid, entry))
    if (!same) bad.push({ uid: r.uid, ctid: r.ctid, reason: `uid already stored in ${part.key} with other bytes of the same size; the stored file stays, this source is not deleted` })
  })
  return bad
}

/**
 * Step 3: one packFiles call, one append per (date, shard) key; nothing
 * partial on failure. The packer takes what the cycle found (keys locked):
 * each row's route, its source's size, and the indexes the pre-check read
 * (`parts`), so it routes, checks and reads none of them again.
 */
export async function packRows(deps: CycleDeps, rows: GoodRow[], parts?: Map<string, ShardHandle[]>): Promise<PackResult> {
  const p = deps.config.packer
  const inputs: PackInput[] = rows.map((r) => ({
    uid: r.uid,
    createdAt: r.createdAt,
    sizeBytes: r.size,
    source: r.location,
    // What step 2 saw of an S3 source: the packer reads that version or none.
    ...(r.source.kind === 's3' && r.etag !== undefined ? { etag: r.etag } : {}),
    location: { dateDir: r.dateDir, shardHex: r.shardHex, shardIndex: r.shardIndex },
  }))
  const opts: PackOptions = {
    nBits: p.nBits,
    layout: p.layout,
    maxShardSize: p.maxShardSize,
    codec: p.codec,
    level: p.level,
    bigFileThreshold: p.bigFileThreshold,
    bigfilesPrefix: p.bigfilesPrefix,
    tailBytes: p.tailBytes,
    writePastCache: p.writePastCache,
    skipExisting: true,
    sourceS3: deps.sourceS3 ? { client: deps.sourceS3 } : undefined,
    // Half-way through, earlier keys are durably written and later ones not yet.
    onProgress: deps.fault === 'in-pack' ? (pr) => (pr.files * 2 >= pr.totalFiles ? faultPoint(deps, 'in-pack') : undefined) : undefined,
  }
  const partsOf = (k: { dateDir: string; shardHex: string }) => parts?.get(`${k.dateDir}/${k.shardHex}`)
  return runPack(inputs, deps.target, opts, {
    // A migration finishes by running again: its rows stay unarchived until stored.
    rerunHint: 'the next cycle finishes them',
    sourcesChecked: true,
    existingParts: parts ? (k) => partsOf(k)?.map((h) => h.reader) : undefined,
    // The pre-check's read of a part is the one before; step 4 is the one after.
    knownPart: parts
      ? (k, part) => {
          const known = partsOf(k)
          if (known === undefined) return undefined
          const h = known[part]
          return h ? { reader: h.reader, etag: h.etag, size: h.objectSize } : null
        }
      : undefined,
    readBackByCaller: true,
  })
}

/** Rows whose source fails while it is packed that a cycle sets aside before it fails itself. */
const SOURCE_FAILURES_SET_ASIDE = 10

/** Errors of one source read while it was packed (its uid in the error): the row's, not the cycle's. */
const SOURCE_FAILURES = new Set(['DES_SOURCE_CHANGED', 'DES_IO', 'DES_NOT_FOUND', 'DES_NO_FILE'])

/**
 * Step 3, past failing sources: a source that checked out but fails while
 * it is read (an I/O error, a file whose real size is not its stat's) is a
 * bad row, and the others are packed again without it. Left to fail the
 * cycle, it would fail every cycle, the batch it heads never getting past
 * it. What the first run stored stays: the next run skips those uids (they
 * are then compared with their sources, as any found stored).
 */
export async function packPast(deps: CycleDeps, rows: GoodRow[], parts?: Map<string, ShardHandle[]>): Promise<{ packed: PackResult; packedRows: GoodRow[]; bad: BadRow[] }> {
  const bad: BadRow[] = []
  let left = rows
  for (;;) {
    try {
      // The parts read before the first run are stale after it: later runs read them afresh.
      const packed = await packRows(deps, left, bad.length === 0 ? parts : undefined)
      return { packed, packedRows: left, bad }
    } catch (err) {
      const uid = err instanceof DesError && SOURCE_FAILURES.has(err.code) ? err.uid : undefined
      const row = uid === undefined ? undefined : left.find((r) => r.uid === uid)
      if (row === undefined || bad.length >= SOURCE_FAILURES_SET_ASIDE) throw err
      bad.push({ uid: row.uid, ctid: row.ctid, reason: `source ${row.location} failed as it was read: ${describe(err)}` })
      left = left.filter((r) => r !== row)
      if (left.length === 0) return { packed: { shards: [], files: 0, skipped: 0, bytesIn: 0, bytesStored: 0, seconds: 0 }, packedRows: left, bad }
    }
  }
}

/**
 * Step 4: re-reads the index of every part of every touched key (fresh, from
 * the store), keeps the rows whose uid is there with the row's size, then
 * reads their stored bytes back and keeps those that check out.
 */
export async function verifyStored(deps: CycleDeps, rows: GoodRow[]): Promise<{ verified: GoodRow[]; missing: BadRow[] }> {
  const parts: Map<string, ShardHandle[]> = await openKeys(deps.store, groupKeys(rows), 16, deps.config.packer.layout, deps.config.packer.tailBytes)
  const indexed: Array<{ row: GoodRow; part: ShardHandle }> = []
  const missing: BadRow[] = []
  for (const r of rows) {
    const keyParts = parts.get(`${r.dateDir}/${r.shardHex}`)!
    const stored = findStored(keyParts, r.uid)
    if (stored.length === 0) missing.push({ uid: r.uid, ctid: r.ctid, reason: `not in the index of ${r.dateDir}/${r.shardHex} after packing` })
    else if (stored.some((s) => s.entry.size !== r.size)) missing.push({ uid: r.uid, ctid: r.ctid, reason: `stored in ${stored[0].key} with ${stored[0].entry.size} bytes, expected ${r.size}` })
    else {
      if (stored.length > 1) deps.log?.(`warning: uid ${JSON.stringify(r.uid)} is in ${stored.length} parts of its shard: ${stored.map((s) => s.key).join(', ')}`)
      indexed.push({ row: r, part: keyParts.find((p) => p.key === stored[0].key)! })
    }
  }
  const byPart = new Map<ShardHandle, GoodRow[]>()
  for (const { row, part } of indexed) {
    const list = byPart.get(part)
    if (list) list.push(row)
    else byPart.set(part, [row])
  }
  const failures = await mapLimit([...byPart], 8, ([part, partRows]) =>
    readBack(part, partRows.map((r) => r.uid), deps.config.packer.bigfilesPrefix, deps.config.packer.layout),
  )
  const failed = new Map(failures.flatMap((m) => [...m]))
  const verified: GoodRow[] = []
  for (const { row } of indexed) {
    const reason = failed.get(row.uid)
    if (reason === undefined) verified.push(row)
    else missing.push({ uid: row.uid, ctid: row.ctid, reason })
  }
  return { verified, missing }
}

/** Step 5: marks exactly the verified rows; any other count rolls the transaction back. */
export async function markArchived(deps: CycleDeps, trx: Knex.Transaction, rows: GoodRow[]): Promise<number> {
  const n = await deps.table.markArchived(trx, rows)
  if (n !== rows.length) throw new DesError('DES_CONFLICT', `marking archived changed ${n} rows, expected ${rows.length}; rolled back`)
  return n
}

/**
 * Step 6: deletes the sources of marked, verified rows; a failure is reported, not fatal (the row is archived).
 * `since` (ms since the epoch): when the cycle began; a local source modified after it, or an S3 one
 * overwritten since its check, is not the one read, and stays.
 */
export async function deleteSources(deps: CycleDeps, rows: GoodRow[], since = Date.now()): Promise<{ deleted: number; errors: BadRow[]; kept: BadRow[] }> {
  const errors: BadRow[] = []
  let deleted = 0
  // A file another row still waits for (two rows, one file) stays until that row is archived too.
  let named: Set<string>
  try {
    named = await deps.table.locationsStillNamed([...new Set(rows.map((r) => r.location))])
  } catch (err) {
    // The rows are archived (committed) and no later cycle selects them again:
    // each source left behind is named in the report and the log, to delete by hand.
    const why = `source %s not deleted: the database could not say whether a row not archived yet names it too (${describe(err)}); delete it by hand`
    return { deleted: 0, errors: rows.map((r) => ({ uid: r.uid, ctid: r.ctid, reason: why.replace('%s', r.location) })), kept: [] }
  }
  const kept = rows.filter((r) => named.has(r.location)).map((r) => ({ uid: r.uid, ctid: r.ctid, reason: `source ${r.location} kept: a row not archived yet names it too` }))
  await mapLimit(rows.filter((r) => !named.has(r.location)), 32, async (r) => {
    try {
      // Rewritten since it was read: those bytes are stored nowhere.
      const changed = await changedSince(r.source, r, since, deps.sourceS3)
      if (changed !== undefined) {
        errors.push({ uid: r.uid, ctid: r.ctid, reason: `source ${r.location} not deleted: ${changed}; the stored copy is the one read before` })
        return
      }
      await deleteSource(r.source, deps.sourceS3)
      deleted++
      if (deleted === 1) faultPoint(deps, 'mid-delete')
    } catch (err) {
      errors.push({ uid: r.uid, ctid: r.ctid, reason: `could not delete source ${r.location}: ${describe(err)}` })
    }
  })
  return { deleted, errors, kept }
}

function shardKeysOf(result: PackResult | undefined, rows: GoodRow[], layout: Layout): string[] {
  if (result) return result.shards.map((s) => s.key)
  return groupKeys(rows).map((k) => shardKeyIn(layout, k, 0))
}

/** Runs one cycle (or, `dryRun`, reports what it would do and changes nothing). */
export async function runCycle(deps: CycleDeps, opts: { dryRun?: boolean } = {}): Promise<CycleReport> {
  const dryRun = Boolean(opts.dryRun)
  const clock = new Clock()
  const started = performance.now()
  // Wall clock, as file times are: a source modified after this was not the one read.
  const startedAt = Date.now()
  const report: CycleReport = {
    dryRun,
    status: 'success',
    selected: 0,
    bad: [],
    alreadyStored: 0,
    packedFiles: 0,
    migrated: 0,
    bytes: 0,
    shardKeys: [],
    processed: 0,
    deleted: 0,
    deleteErrors: [],
    sourcesKept: [],
    timings: clock.t,
  }
  let marked: GoodRow[] = []
  let committed = false
  try {
    report.pendingBefore = await clock.time('database', () => deps.table.pendingCount(cutoffOf(deps.config)))
  } catch {
    // As in the reference, a failed count leaves the gauge as it was; the cycle says what failed.
  }
  try {
    marked = await deps.table.transaction(
      async (trx) => {
        const { selected, good, bad } = await claimBatch(deps, trx, !dryRun, clock)
        report.selected = selected
        report.bad.push(...bad)
        if (good.length === 0) return []
        // Writers of one store take turns per key; taken before looking at what is stored.
        if (!dryRun) {
          await clock.time('database', () =>
            deps.table.lockShardKeys(
              trx,
              deps.lockNamespace,
              groupKeys(good).map((k) => `${k.dateDir}/${k.shardHex}`),
            ),
          )
        }
        const pre = await clock.time('precheck', () => precheckStored(deps, good))
        report.bad.push(...pre.bad)
        report.alreadyStored = pre.alreadyStored.length
        if (dryRun) {
          const candidates = [...pre.toPack, ...pre.alreadyStored]
          report.migrated = candidates.length
          report.bytes = candidates.reduce((n, r) => n + r.size, 0)
          report.shardKeys = shardKeysOf(undefined, pre.toPack, deps.config.packer.layout)
          return []
        }
        let packed: PackResult | undefined
        let toPack = pre.toPack
        if (toPack.length > 0) {
          const run = await clock.time('pack', () => packPast(deps, pre.toPack, pre.parts))
          packed = run.packed
          toPack = run.packedRows
          report.bad.push(...run.bad)
          report.packedFiles = packed.files
          report.shardKeys = shardKeysOf(packed, toPack, deps.config.packer.layout)
          if (packed.tempsRemoved) deps.log?.(`removed ${packed.tempsRemoved} temp files left by packers that died`)
          for (const w of packed.warnings ?? []) deps.log?.(`warning: ${w}`)
        }
        faultPoint(deps, 'after-pack')
        const candidates = [...toPack, ...pre.alreadyStored]
        const { verified: intact, missing } = await clock.time('verify', () => verifyStored(deps, candidates))
        report.bad.push(...missing)
        const intactSet = new Set(intact)
        // Found stored already: before packing, or by the packer itself (another writer stored the uid
        // in between, and the packer skipped it): either way, only its bytes say whose file it is.
        const packedUids = new Set(packed?.shards.flatMap((sh) => sh.uids) ?? [])
        const storedByOthers = [...pre.alreadyStored, ...toPack.filter((r) => !packedUids.has(r.uid))]
        const others = await clock.time('verify', () => sameAsSource(deps, storedByOthers.filter((r) => intactSet.has(r))))
        // Bad rows like one stored with another size: reported, not marked, the rest go on.
        report.bad.push(...others)
        // By uid, which names one row of a batch (a second one is a bad row before): a ctid repeats in each partition of a table.
        const otherUids = new Set(others.map((o) => o.uid))
        const verified = others.length === 0 ? intact : intact.filter((r) => !otherUids.has(r.uid))
        faultPoint(deps, 'after-verify')
        await clock.time('database', () => markArchived(deps, trx, verified))
        faultPoint(deps, 'before-commit')
        if (missing.length > 0) {
          report.status = 'error'
          report.errorCode = 'DES_CORRUPT'
        }
        return verified
      },
      { readOnly: dryRun },
    )
    // Committed: from here on the rows are archived.
    committed = true
    if (!dryRun) {
      report.processed = report.selected
      report.migrated = marked.length
      report.bytes = marked.reduce((n, r) => n + r.size, 0)
    }
    faultPoint(deps, 'after-mark')
    if (!dryRun && deps.config.migration.deleteSourceFiles && marked.length > 0) {
      const del = await clock.time('deleteSources', () => deleteSources(deps, marked, startedAt))
      report.deleted = del.deleted
      report.deleteErrors = del.errors
      report.sourcesKept = del.kept
    }
    report.pending = await clock.time('database', () => deps.table.pendingCount(cutoffOf(deps.config)))
  } catch (err) {
    // Nothing of this cycle was marked (the transaction rolled back), or the
    // failure came after the commit (pending count): either way the table is consistent.
    report.status = 'error'
    report.error = describe(err)
    report.errorCode = classifyError(err)
    if (!committed && !dryRun) {
      report.migrated = 0
      report.bytes = 0
    }
  }
  for (const b of report.bad) deps.log?.(`bad row uid=${JSON.stringify(b.uid)} ctid=${b.ctid}: ${b.reason}`)
  for (const b of report.deleteErrors) deps.log?.(`delete failed uid=${JSON.stringify(b.uid)}: ${b.reason}`)
  for (const b of report.sourcesKept) deps.log?.(`source kept uid=${JSON.stringify(b.uid)}: ${b.reason}`)
  clock.t.total = (performance.now() - started) / 1000
  return report
}
