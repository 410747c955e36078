// The source table, through Knex with `pg`. Table and column names come from
// the config and are always quoted here, never spliced in raw.
//
// Locking (see docs/MIGRATION.md): a cycle runs in one transaction that
// claims its rows with `FOR UPDATE SKIP LOCKED` (another migrator skips them;
// a crash rolls the claim back) and, before packing, takes a transaction-level
// advisory lock per (date, shard) key it will write, so two migrators never
// append to one shard at once even on S3, where nothing else would stop them.

import knexFactory, { type Knex } from 'knex'
import { knexLog, type KnexLog } from '../log'
import type { DatabaseConfig } from '../config/migrate'
import { MAX_UID_BYTES } from '../store/uid'

/** No local path (PATH_MAX) nor `s3://bucket/key` (a key is at most 1,024 bytes) is longer. */
export const MAX_LOCATION_BYTES = 4096

/** What a select carries of a value too long to use: enough to find the row by, never megabytes per row. */
export const SHOWN_CHARS = 64

/** One claimed row, every value as PostgreSQL's text for it (NULL stays null). */
export interface SourceRow {
  /** Physical row id, stable while our row lock is held: marking uses it so exactly the claimed rows are marked. */
  ctid: string
  /** The table (partition) holding it, by oid: in a partitioned table each partition has its own ctids. */
  tableoid: string
  uid: string | null
  /** `created_at::text` with the session in UTC, e.g. `2024-01-02 03:04:05.123+00`. */
  createdAt: string | null
  location: string | null
  /** null also when the config names no size column. */
  sizeBytes: string | null
  /** Set when the uid is longer than a shard holds: its length in bytes (`uid` is then its first SHOWN_CHARS characters). */
  uidBytes?: number
  /** Set when the location is longer than MAX_LOCATION_BYTES: its length in bytes (`location` is then its first SHOWN_CHARS characters). */
  locationBytes?: number
  /**
   * `YYYYMMDD` of created_at as the reference's migrator dated it (the flat
   * layout's rule): a timestamptz in the database session's own time zone
   * (what its driver handed it), a timestamp as stored.
   */
  writtenDate: string | null
}

/** `postgresql+psycopg://` (SQLAlchemy-style URLs of the original tool) → `postgresql://`. */
export function normaliseDbUrl(url: string): string {
  return url.replace(/^postgres(ql)?\+[a-z0-9]+:\/\//i, 'postgresql://')
}

/**
 * How long a new connection may take to be ready: a server that accepts and
 * never answers (a half-dead host, a wrong port) fails the cycle as
 * unavailable instead of holding it for ever. Queries have no limit: a
 * cycle may wait on another migrator's locks for as long as its cycle runs.
 */
const CONNECT_TIMEOUT_MS = 10_000

/** A Knex pool for a PostgreSQL URL; knex's own log lines go to `log` (default: the stderr logger, never stdout). */
export function createKnex(url: string, poolMax = 4, log: KnexLog = knexLog()): Knex {
  return knexFactory({
    client: 'pg',
    connection: { connectionString: normaliseDbUrl(url), connectionTimeoutMillis: CONNECT_TIMEOUT_MS },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 30_000,
    log,
  })
}

/** A row's identity in SQL (`oid:(page,item)`), as rowKey makes it. */
const ROW_KEY = `(tableoid::text || ':' || ctid::text)`

/** A claimed row's identity: its ctid within its table or partition. */
export function rowKey(row: Pick<SourceRow, 'ctid' | 'tableoid'>): string {
  return `${row.tableoid}:${row.ctid}`
}

/** `name` as a quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** `table` or `schema.table`, each part quoted. */
export function quoteTable(name: string): string {
  return name.split('.').map(quoteIdent).join('.')
}

export interface Cutoff {
  /** Rows created before this instant (ISO) ... */
  iso?: string
  /** ... or before the database's now() minus this many days. */
  ageDays?: number
}

/** The source table with the configured names. */
export class SourceTable {
  readonly table: string
  private readonly c: { uid: string; createdAt: string; location: string; size: string | null; archived: string }
  /** The session's own TimeZone of each transaction, before it is set to UTC. */
  private readonly sessionZone = new WeakMap<Knex.Transaction, string>()

  constructor(
    readonly knex: Knex,
    cfg: Pick<DatabaseConfig, 'tableName' | 'uidColumn' | 'createdAtColumn' | 'fileLocationColumn' | 'sizeBytesColumn' | 'archivedColumn'>,
  ) {
    this.table = quoteTable(cfg.tableName)
    this.c = {
      uid: quoteIdent(cfg.uidColumn),
      createdAt: quoteIdent(cfg.createdAtColumn),
      location: quoteIdent(cfg.fileLocationColumn),
      size: cfg.sizeBytesColumn === null ? null : quoteIdent(cfg.sizeBytesColumn),
      archived: quoteIdent(cfg.archivedColumn),
    }
  }

  /** `WHERE` of what would migrate, with its bindings. */
  private pendingWhere(cutoff: Cutoff): { sql: string; bindings: Knex.RawBinding[] } {
    const { createdAt, archived } = this.c
    if (cutoff.iso !== undefined) return { sql: `${archived} = false AND ${createdAt} < ?::timestamptz`, bindings: [cutoff.iso] }
    return { sql: `${archived} = false AND ${createdAt} < now() - ? * interval '1 second'`, bindings: [(cutoff.ageDays ?? 0) * 86400] }
  }

  /** Runs `work` in a transaction whose session shows timestamps in UTC. */
  async transaction<T>(work: (trx: Knex.Transaction) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
    return this.knex.transaction(async (trx) => {
      const zone = await trx.raw(`SELECT current_setting('TimeZone') AS tz`)
      this.sessionZone.set(trx, zone.rows[0].tz as string)
      await trx.raw(`SET LOCAL TIME ZONE 'UTC'`)
      if (opts.readOnly) await trx.raw('SET TRANSACTION READ ONLY')
      return work(trx)
    })
  }

  /**
   * Step 1: up to `limit` unarchived rows older than the cutoff, oldest first.
   * With `lock`, rows are claimed (`FOR UPDATE SKIP LOCKED`) until `trx` ends.
   */
  async selectBatch(trx: Knex.Transaction, cutoff: Cutoff, limit: number, lock: boolean, exclude: string[] = []): Promise<SourceRow[]> {
    const { uid, createdAt, location, size } = this.c
    const where = this.pendingWhere(cutoff)
    // `exclude`: rows this transaction has seen already (SKIP LOCKED does not skip our own locks), by rowKey.
    // The date as written: a timestamptz seen in the session's own zone, a timestamp as it is.
    const written =
      `CASE WHEN pg_typeof(${createdAt}) = 'timestamptz'::regtype THEN to_char(timezone(?, ${createdAt}::timestamptz), 'YYYYMMDD') ` +
      `ELSE to_char(${createdAt}::timestamp, 'YYYYMMDD') END AS written_date`
    // A value too long to use comes cut, with its length: a batch of uids of megabytes would otherwise fill memory, and every report.
    const cut = (column: string, max: number, as: string) =>
      `CASE WHEN octet_length(${column}::text) > ${max} THEN left(${column}::text, ${SHOWN_CHARS}) ELSE ${column}::text END AS ${as}, ` +
      `CASE WHEN octet_length(${column}::text) > ${max} THEN octet_length(${column}::text) END AS ${as}_bytes`
    const sql =
      `SELECT ctid::text AS ctid, tableoid::text AS tableoid, ${cut(uid, MAX_UID_BYTES, 'uid')}, ${createdAt}::text AS created_at, ` +
      `${cut(location, MAX_LOCATION_BYTES, 'location')}, ${size ?? 'NULL'}::text AS size_bytes, ${written} ` +
      `FROM ${this.table} WHERE ${where.sql}${exclude.length ? ` AND ${ROW_KEY} <> ALL(?::text[])` : ''} ORDER BY ${createdAt} LIMIT ?` +
      (lock ? ' FOR UPDATE SKIP LOCKED' : '')
    const res = await trx.raw(sql, [this.sessionZone.get(trx) ?? 'UTC', ...where.bindings, ...(exclude.length ? [exclude] : []), limit])
    return (res.rows as Array<Record<string, string | number | null>>).map((r) => ({
      ctid: r.ctid as string,
      tableoid: r.tableoid as string,
      uid: r.uid as string | null,
      createdAt: r.created_at as string | null,
      location: r.location as string | null,
      sizeBytes: r.size_bytes as string | null,
      writtenDate: r.written_date as string | null,
      ...(r.uid_bytes !== null ? { uidBytes: Number(r.uid_bytes) } : {}),
      ...(r.location_bytes !== null ? { locationBytes: Number(r.location_bytes) } : {}),
    }))
  }

  /**
   * Takes a transaction-level advisory lock on each shard key, in the order of
   * their lock ids, so two migrators never wait on each other in a circle.
   * Held until `trx` ends; `namespace` names the store (the same store shares locks).
   */
  async lockShardKeys(trx: Knex.Transaction, namespace: string, keys: string[]): Promise<void> {
    if (keys.length === 0) return
    // Volatile functions in the SELECT list run after ORDER BY (PostgreSQL >= 9.6).
    await trx.raw(
      `SELECT pg_advisory_xact_lock(hashtext(?), h) FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(?::text[]) AS k) s ORDER BY h`,
      [namespace, keys],
    )
  }

  /** Step 5: marks exactly these claimed rows archived; resolves to how many were. */
  async markArchived(trx: Knex.Transaction, rows: Array<Pick<SourceRow, 'ctid' | 'tableoid'>>): Promise<number> {
    if (rows.length === 0) return 0
    // ctid alone finds the rows fast (a TID scan); with the partition, only ours.
    const res = await trx.raw(`UPDATE ${this.table} SET ${this.c.archived} = true WHERE ctid = ANY(?::tid[]) AND ${ROW_KEY} = ANY(?::text[]) AND ${this.c.archived} = false`, [
      rows.map((r) => r.ctid),
      rows.map(rowKey),
    ])
    return res.rowCount as number
  }

  /**
   * Of these file locations, those some row not archived yet still names
   * (whatever its age): its source must not be deleted under it.
   */
  async locationsStillNamed(locations: string[]): Promise<Set<string>> {
    if (locations.length === 0) return new Set()
    const res = await this.knex.raw(
      `SELECT DISTINCT ${this.c.location}::text AS l FROM ${this.table} WHERE ${this.c.location} = ANY(?::text[]) AND ${this.c.archived} = false`,
      [locations],
    )
    return new Set((res.rows as Array<{ l: string }>).map((r) => r.l))
  }

  /** Count, total bytes, oldest and newest created_at of what would migrate. */
  async pendingStats(cutoff: Cutoff): Promise<{ count: number; totalBytes: number; oldest: string | null; newest: string | null }> {
    const { createdAt, size } = this.c
    const where = this.pendingWhere(cutoff)
    return this.transaction(
      async (trx) => {
        const res = await trx.raw(
          `SELECT count(*)::text AS count, ${size === null ? '0' : `coalesce(sum(${size}), 0)`}::text AS total, ` +
            `min(${createdAt})::text AS oldest, max(${createdAt})::text AS newest FROM ${this.table} WHERE ${where.sql}`,
          where.bindings,
        )
        const r = res.rows[0] as Record<string, string | null>
        return { count: Number(r.count), totalBytes: Number(r.total), oldest: isoOrNull(r.oldest), newest: isoOrNull(r.newest) }
      },
      { readOnly: true },
    )
  }

  /** How many rows still wait (for the pending gauge). */
  async pendingCount(cutoff: Cutoff): Promise<number> {
    const where = this.pendingWhere(cutoff)
    const res = await this.knex.raw(`SELECT count(*)::text AS n FROM ${this.table} WHERE ${where.sql}`, where.bindings)
    return Number(res.rows[0].n)
  }
}

const PG_TS = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?|Z)?$/

/**
 * PostgreSQL's text for a timestamp (session in UTC) as ISO-8601 UTC, or null
 * when it is not a plain one (`infinity`, BC dates, 5-digit years...).
 */
export function pgTimestampToIso(text: string | null): string | null {
  if (text === null) return null
  const m = PG_TS.exec(text.trim())
  if (!m) return null
  const [, y, mo, d, h, mi, s, frac = '', sign, oh, om = '00', os = '00'] = m
  const wall = new Date(Date.UTC(2000, Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)))
  wall.setUTCFullYear(Number(y)) // Date.UTC maps years 0..99 to 1900..1999
  const offset = sign ? (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os)) : 0
  const date = new Date(wall.getTime() - offset * 1000)
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() < 1 || date.getUTCFullYear() > 9999) return null
  // Keep PostgreSQL's own fraction (microseconds), not JS's milliseconds.
  return date.toISOString().replace(/\.\d{3}Z$/, `${frac.slice(0, 10)}Z`)
}

function isoOrNull(text: string | null): string | null {
  return text === null ? null : (pgTimestampToIso(text) ?? text)
}
