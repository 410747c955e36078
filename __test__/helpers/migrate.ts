// A source table of its own per test (a fresh schema in the real PostgreSQL),
// files on disk for its rows, config files, and reading archived uids back
// through the store `des serve` uses (src/store) to compare bytes.

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Knex } from 'knex'
import * as YAML from 'yaml'
import { createKnex, quoteIdent as q } from '../../src/migrate/db'
import { locateShard } from '../../src/native'
import type { ByteSource } from '../../src/storage/source'
import { openParts } from '../../src/migrate/verify'
import { Store } from '../../src/store'
import { singleSource } from '../../src/storage/source'
import { pgTestUrl } from './services'

export interface TestRow {
  uid: string
  createdAt: string
  location: string
  size: number
  data?: Buffer
}

export interface TestTable {
  schema: string
  /** `schema.files` */
  table: string
  knex: Knex
  dir: string
  insert(rows: Array<Omit<Partial<TestRow>, 'uid'> & { uid: string | null }>): Promise<void>
  /** `uid → archived` for every row. */
  archived(): Promise<Map<string, boolean>>
  close(): Promise<void>
}

/** A fresh schema with a `files` table of the SPEC §10 shape, plus a temp dir. */
export async function freshTable(label: string, columns?: { uid?: string; createdAt?: string; location?: string; size?: string; archived?: string }): Promise<TestTable> {
  const c = { uid: 'uid', createdAt: 'created_at', location: 'file_location', size: 'size_bytes', archived: 'archived', ...columns }
  const knex = createKnex(pgTestUrl(), 2)
  const schema = `mig_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`
  await knex.raw(`CREATE SCHEMA ${schema}`)
  await knex.raw(
    `CREATE TABLE ${schema}.files (id serial PRIMARY KEY, ${q(c.uid)} text, ${q(c.createdAt)} timestamptz, ${q(c.location)} text, ${q(c.size)} bigint, ${q(c.archived)} boolean NOT NULL DEFAULT false)`,
  )
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `des-mig-${label}-`))
  return {
    schema,
    table: `${schema}.files`,
    knex,
    dir,
    async insert(rows) {
      for (let i = 0; i < rows.length; i += 1000) {
        await knex(`${schema}.files`).insert(
          rows.slice(i, i + 1000).map((r) => ({ [c.uid]: r.uid, [c.createdAt]: r.createdAt ?? null, [c.location]: r.location ?? null, [c.size]: r.size ?? null })),
        )
      }
    },
    async archived() {
      const res = await knex.raw(`SELECT ${q(c.uid)} AS uid, ${q(c.archived)} AS archived FROM ${schema}.files`)
      return new Map(res.rows.map((r: { uid: string; archived: boolean }) => [r.uid, r.archived]))
    },
    async close() {
      await knex.raw(`DROP SCHEMA ${schema} CASCADE`)
      await knex.destroy()
    },
  }
}

/** `n` files of random sizes under `dir/src`, with rows `days` days old (spread over a few dates). */
export function makeFiles(dir: string, n: number, opts: { prefix?: string; daysOld?: number; maxSize?: number } = {}): TestRow[] {
  const src = path.join(dir, 'src')
  fs.mkdirSync(src, { recursive: true })
  const rows: TestRow[] = []
  const base = Date.UTC(2024, 0, 10, 12)
  for (let i = 0; i < n; i++) {
    const uid = `${opts.prefix ?? 'f'}${i}`
    // Half random (incompressible), half repetitive (compressible).
    const size = 1 + ((i * 7919) % (opts.maxSize ?? 3000))
    const data = i % 2 ? randomBytes(size) : Buffer.alloc(size, `row ${i} `)
    const location = path.join(src, uid)
    fs.writeFileSync(location, data)
    const createdAt = new Date(base - (i % 3) * 86_400_000 - i * 1000).toISOString()
    rows.push({ uid, createdAt, location, size, data })
  }
  return rows
}

/** Writes a config file (`.json` or `.yaml`) and returns its path. */
export function writeConfig(dir: string, doc: unknown, format: 'json' | 'yaml' = 'json', name = 'migrate'): string {
  const file = path.join(dir, `${name}.${format}`)
  fs.writeFileSync(file, format === 'json' ? JSON.stringify(doc, null, 2) : YAML.stringify(doc))
  return file
}

/** A config document for a test table (SPEC §10 keys), local output under `dir/out`. */
export function baseConfig(t: Pick<TestTable, 'table' | 'dir'>, over: { migration?: Record<string, unknown>; packer?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    database: { url: pgTestUrl(), table_name: t.table },
    migration: { archive_age_days: 7, batch_size: 100, delete_source_files: false, ...over.migration },
    packer: { output_dir: path.join(t.dir, 'out'), n_bits: 4, ...over.packer },
  }
}

const stores = new WeakMap<ByteSource, Store>()

/**
 * Reads a uid back through the store `des serve` uses (src/store: routing,
 * continuations, index cache, native reader), and counts how many parts of
 * its (date, shard) key hold it.
 */
export async function readBack(source: ByteSource, uid: string, createdAt: string, nBits: number): Promise<{ data: Buffer | null; copies: number }> {
  let store = stores.get(source)
  if (!store) {
    store = new Store({ sources: singleSource(source), nBits })
    stores.set(source, store)
  }
  let data: Buffer | null = null
  try {
    data = await store.get(uid, createdAt)
  } catch (err) {
    if ((err as { code?: string }).code !== 'DES_NOT_FOUND') throw err
  }
  const loc = locateShard(uid, createdAt, nBits)
  const parts = await openParts(source, loc.dateDir, loc.shardHex)
  const copies = parts.filter((p) => p.reader.has(uid)).length
  return { data, copies }
}

/** Every uid in every shard under a local store (with how many times each appears). */
export function allStoredUids(outDir: string): Map<string, number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ShardReader } = require('../../src/native') as typeof import('../../src/native')
  const counts = new Map<string, number>()
  if (!fs.existsSync(outDir)) return counts
  for (const date of fs.readdirSync(outDir)) {
    const d = path.join(outDir, date)
    if (!fs.statSync(d).isDirectory()) continue
    for (const f of fs.readdirSync(d)) {
      if (!f.endsWith('.des')) continue
      const r = ShardReader.openSync(path.join(d, f))
      for (const e of r.entries(0, r.entryCount)) counts.set(e.uid, (counts.get(e.uid) ?? 0) + 1)
    }
  }
  return counts
}
