// `des migrate` and `des stats` against the real PostgreSQL: stats, dry run, a
// normal cycle, bad rows, the config's names, continuous mode and metrics.
// Each test has its own schema, so the file runs in parallel with the others.
// CLI tests run the built dist/ (npx tsc -p tsconfig.json first).

import test, { type ExecutionContext } from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import * as os from 'node:os'
import { runCli } from './helpers/cli'
import { ROOT } from './helpers/golden'
import { allStoredUids, baseConfig, freshTable, makeFiles, readBack, writeConfig, type TestRow, type TestTable } from './helpers/migrate'
import { parseMigrateConfig } from '../src/config/migrate'
import { createDeps } from '../src/migrate/run'
import { checkRow, deleteSources, sameAsSource, type CycleDeps } from '../src/migrate/cycle'
import { localFileId, localFileSeen, parseLocation } from '../src/migrate/sources'
import { runCycle } from '../src/migrate/cycle'
import { LocalSource } from '../src/storage/local'
import { FolderKeys, ofTheStore, StoreLinks } from '../src/migrate/store-guard'
import { packFiles } from '../src/pack'
import { DesError } from '../src/errors'
import { Store } from '../src/store/store'
import { singleSource } from '../src/storage/source'

async function readAllBack(t: { is: (a: unknown, b: unknown, m?: string) => void; true: (v: boolean, m?: string) => void }, outDir: string, rows: TestRow[], nBits: number) {
  const store = new LocalSource(outDir)
  for (const r of rows) {
    const got = await readBack(store, r.uid, r.createdAt, nBits)
    t.is(got.copies, 1, `${r.uid} stored once`)
    t.true(got.data !== null && got.data.equals(r.data!), `${r.uid} reads back with its bytes`)
  }
}

test('des stats: count, total bytes, oldest and newest of the unarchived rows before the cutoff (text, --json, des-stats)', async (t) => {
  const tb = await freshTable('stats')
  t.teardown(() => tb.close())
  await tb.insert([
    { uid: 'a', createdAt: '2024-01-01T00:00:00Z', location: '/x/a', size: 10 },
    { uid: 'b', createdAt: '2024-02-01T12:00:00.5Z', location: '/x/b', size: 20 },
    { uid: 'c', createdAt: '2024-06-01T00:00:00Z', location: '/x/c', size: 40 },
  ])
  await tb.knex.raw(`INSERT INTO ${tb.table} (uid, created_at, file_location, size_bytes, archived) VALUES ('d', '2023-01-01', '/x/d', 80, true)`)
  const url = process.env.DES_TEST_PG_URL!
  const json = await runCli(['stats', '--db-url', url, '--table', tb.table, '--cutoff', '2024-03-01T00:00:00Z', '--json'])
  t.is(json.code, 0, json.stderr)
  t.deepEqual(JSON.parse(json.stdout.toString()), {
    table: tb.table,
    cutoff: '2024-03-01T00:00:00.000Z',
    count: 2,
    total_bytes: 30,
    oldest: '2024-01-01T00:00:00Z',
    newest: '2024-02-01T12:00:00.5Z',
  })
  const text = await runCli(['--db-url', url.replace('postgres://', 'postgresql+psycopg://'), '--table', tb.table, '--cutoff', '2025-01-01'], { bin: 'des-stats.js' })
  t.is(text.code, 0, text.stderr)
  t.regex(text.stdout.toString(), /files:\s+3\n/)
  t.regex(text.stdout.toString(), /total bytes: 70 /)
  const bad = await runCli(['stats', '--db-url', url, '--table', tb.table, '--cutoff', 'yesterday'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /--cutoff "yesterday"/)
})

test('size_bytes_column: null, as the reference allows: the size of each source is taken, and every file migrates', async (t) => {
  const tb = await freshTable('nosize')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 9)
  await tb.insert(rows.map((r) => ({ ...r, size: undefined })))
  const doc = baseConfig(tb) as { database: Record<string, unknown> }
  doc.database.size_bytes_column = null
  const deps = createDeps(parseMigrateConfig(doc))
  try {
    const report = await runCycle(deps)
    t.is(report.status, 'success', report.error)
    t.is(report.migrated, 9)
    t.is(report.bytes, rows.reduce((n, r) => n + r.size, 0))
  } finally {
    await deps.close()
  }
  await readAllBack(t, path.join(tb.dir, 'out'), rows, 4)
})

test('packer.layout flat: rows migrate into the reference\'s flat layout, dated as its migrator dated them (in the database session\'s zone), and a flat store serves them', async (t) => {
  const tb = await freshTable('flat')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 6)
  // Late evening in New York: the next day in UTC.
  rows.forEach((r, i) => (r.createdAt = `2024-01-0${1 + (i % 3)}T0${3 + (i % 2)}:30:00Z`))
  await tb.insert(rows)
  const doc = baseConfig(tb, { packer: { layout: 'flat' } }) as { database: Record<string, unknown> }
  doc.database.url = `${process.env.DES_TEST_PG_URL}?options=-c%20TimeZone%3DAmerica%2FNew_York`
  const deps = createDeps(parseMigrateConfig(doc))
  try {
    const report = await runCycle(deps)
    t.is(report.status, 'success', report.error)
    t.is(report.migrated, 6)
    t.true(report.shardKeys.every((k) => /^\d{8}_[0-9A-F]_0000\.des$/.test(k)), report.shardKeys.join(' '))
  } finally {
    await deps.close()
  }
  const out = path.join(tb.dir, 'out')
  const store = new Store({ sources: singleSource(new LocalSource(out)), nBits: 4, layout: 'flat' })
  for (const r of rows) {
    const utc = new Date(r.createdAt)
    // The instant as the database handed it to the reference: in New York time (UTC-5 in January).
    const local = new Date(utc.getTime() - 5 * 3600_000).toISOString().slice(0, 19) + '-05:00'
    t.true((await store.get(r.uid, local)).equals(r.data!), r.uid)
    t.true(fs.readdirSync(out).some((n) => n.startsWith(local.slice(0, 10).replace(/-/g, '') + '_')), `${r.uid} under its New York date`)
  }
})

test('the original\'s config, naming no layout, does not write nested shards into its flat store: refused (exit 2) until a layout is set', async (t) => {
  const tb = await freshTable('flatkeep')
  t.teardown(() => tb.close())
  const older = makeFiles(tb.dir, 4, { prefix: 'old', daysOld: 20 })
  await tb.insert(older)
  const out = path.join(tb.dir, 'out')
  // The store as the original's migrator left it: flat shards at its root.
  const flat = await runCli(['migrate', '--config', writeConfig(tb.dir, baseConfig(tb, { packer: { layout: 'flat' } }), 'yaml', 'flat')], { env: { DES_LAYOUT: '' } })
  t.is(flat.code, 0, flat.stderr)
  const newer = makeFiles(tb.dir, 4, { prefix: 'new', daysOld: 10 })
  await tb.insert(newer)
  // Its config as it was: no packer.layout, no DES_LAYOUT.
  const original = writeConfig(tb.dir, baseConfig(tb), 'yaml', 'original')
  const refused = await runCli(['migrate', '--config', original], { env: { DES_LAYOUT: '' } })
  t.is(refused.code, 2, refused.stderr)
  t.regex(refused.stderr, /the store holds shards of the original's flat layout \(\d{8}_[0-9A-F]_0000\.des\), and no layout is set.*set packer\.layout \(or DES_LAYOUT\) to flat/)
  t.false(fs.readdirSync(out).some((n) => fs.statSync(path.join(out, n)).isDirectory()), 'no nested folder written')
  t.true(newer.every((r) => fs.existsSync(r.location)))
  t.deepEqual([...(await tb.archived()).entries()].filter(([, a]) => a).map(([u]) => u).sort(), older.map((r) => r.uid).sort(), 'only the rows of the first run archived')
  // DES_LAYOUT=flat keeps writing the original's layout; every file is found there.
  const kept = await runCli(['migrate', '--config', original], { env: { DES_LAYOUT: 'flat' } })
  t.is(kept.code, 0, kept.stderr)
  const store = new Store({ sources: singleSource(new LocalSource(out)), nBits: 4, layout: 'flat' })
  for (const r of [...older, ...newer]) t.true((await store.get(r.uid, r.createdAt)).equals(r.data!), r.uid)
  // Nested chosen on purpose is written.
  await tb.insert(makeFiles(tb.dir, 2, { prefix: 'later', daysOld: 9 }))
  const nested = await runCli(['migrate', '--config', writeConfig(tb.dir, baseConfig(tb, { packer: { layout: 'nested' } }), 'yaml', 'nested')], { env: { DES_LAYOUT: '' } })
  t.is(nested.code, 0, nested.stderr)
})

test('des stats takes the original des-stats flags: --dry-run (a no-op), --size-bytes-column \'\' (size totals off), a postgresql+psycopg:// URL', async (t) => {
  const tb = await freshTable('statsref')
  t.teardown(() => tb.close())
  await tb.insert([
    { uid: 'a', createdAt: '2024-01-01T00:00:00Z', location: '/x/a', size: 10 },
    { uid: 'b', createdAt: '2024-02-01T00:00:00Z', location: '/x/b', size: 20 },
  ])
  const url = process.env.DES_TEST_PG_URL!.replace('postgres://', 'postgresql+psycopg://')
  const args = ['--db-url', url, '--table', tb.table, '--cutoff', '2024-03-01T00:00:00Z', '--dry-run']
  const sized = await runCli([...args, '--json'], { bin: 'des-stats.js' })
  t.is(sized.code, 0, sized.stderr)
  t.like(JSON.parse(sized.stdout.toString()), { count: 2, total_bytes: 30 })
  const unsized = await runCli([...args, '--size-bytes-column', '', '--json'], { bin: 'des-stats.js' })
  t.is(unsized.code, 0, unsized.stderr)
  t.like(JSON.parse(unsized.stdout.toString()), { count: 2, total_bytes: 0 })
  t.deepEqual([...(await tb.archived()).values()], [false, false], 'nothing changed')
})

test('a dry run reports what a cycle would do and changes nothing anywhere', async (t) => {
  const tb = await freshTable('dry')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 30)
  await tb.insert([...rows, { uid: 'missing', createdAt: '2024-01-01T00:00:00Z', location: path.join(tb.dir, 'nope'), size: 3 }])
  const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { delete_source_files: true } }), 'yaml')
  const r = await runCli(['migrate', '--config', cfg, '--dry-run', '--json'])
  t.is(r.code, 0, r.stderr)
  const report = JSON.parse(r.stdout.toString())
  t.is(report.dry_run, true)
  t.is(report.selected, 31)
  t.is(report.migrated, 30)
  t.is(report.bytes, rows.reduce((n, x) => n + x.size, 0))
  t.deepEqual(
    report.bad.map((b: { uid: string }) => b.uid),
    ['missing'],
  )
  t.true(report.shard_keys.length > 0)
  t.false(fs.existsSync(path.join(tb.dir, 'out')), 'no output written')
  t.true([...(await tb.archived()).values()].every((a) => a === false), 'no row marked')
  t.true(rows.every((x) => fs.existsSync(x.location)), 'no source deleted')
})

test('a normal cycle archives every row, one append per (date, shard) key, and every uid reads back with its bytes', async (t) => {
  const tb = await freshTable('normal')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 120)
  await tb.insert(rows)
  await tb.insert([{ uid: 'young', createdAt: new Date().toISOString(), location: rows[0].location, size: rows[0].size }])
  const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { batch_size: 1000 } }), 'yaml')
  const r = await runCli(['migrate', '--config', cfg, '--json'])
  t.is(r.code, 0, r.stderr)
  const report = JSON.parse(r.stdout.toString())
  t.is(report.status, 'success')
  t.is(report.migrated, 120)
  t.is(report.packed_files, 120)
  t.deepEqual(report.bad, [])
  // One append per key: each key written once, and as many keys as (date, shard) pairs.
  const keys = new Set(rows.map((x) => `${x.createdAt.slice(0, 10).replace(/-/g, '')}`))
  t.true(keys.size >= 3)
  t.is(new Set(report.shard_keys).size, report.shard_keys.length, 'no key written twice')
  const outDir = path.join(tb.dir, 'out')
  const desFiles = fs.readdirSync(outDir).flatMap((d) => fs.readdirSync(path.join(outDir, d)).filter((f) => f.endsWith('.des')).map((f) => `${d}/${f}`))
  t.deepEqual(desFiles.sort(), [...report.shard_keys].sort())
  t.true(desFiles.length < 120 / 2, `far fewer shards (${desFiles.length}) than files`)
  const archived = await tb.archived()
  t.true(rows.every((x) => archived.get(x.uid) === true))
  t.is(archived.get('young'), false, 'a row younger than archive_age_days waits')
  await readAllBack(t, outDir, rows, 4)
  t.true(rows.every((x) => fs.existsSync(x.location)), 'delete_source_files false keeps sources')
  // A second run finds nothing to do.
  const again = await runCli(['migrate', '--config', cfg, '--json'])
  t.is(JSON.parse(again.stdout.toString()).selected, 0)
})

test('bad rows are reported by uid, skipped and not marked, and do not stop the others; only good sources are deleted', async (t) => {
  const tb = await freshTable('bad')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 20)
  await tb.insert(rows)
  const old = '2024-01-01T00:00:00Z'
  await tb.insert([
    { uid: 'missing-source', createdAt: old, location: path.join(tb.dir, 'nope'), size: 5 },
    { uid: 'size-mismatch', createdAt: old, location: rows[1].location, size: rows[1].size + 1 },
    { uid: 'null-location', createdAt: old, location: undefined, size: 5 },
    { uid: 'garbage-location', createdAt: old, location: 'ftp://host/file', size: 5 },
    { uid: 'null-size', createdAt: old, location: rows[2].location, size: undefined },
    { uid: 'dup', createdAt: old, location: rows[3].location, size: rows[3].size },
    { uid: 'dup', createdAt: old, location: rows[4].location, size: rows[4].size },
    { uid: null, createdAt: old, location: rows[5].location, size: rows[5].size },
  ])
  await tb.knex.raw(`INSERT INTO ${tb.table} (uid, created_at, file_location, size_bytes) VALUES ('infinite-date', '-infinity', ?, ?), ('bc-date', '0044-03-15 BC', ?, ?)`, [
    rows[6].location,
    rows[6].size,
    rows[7].location,
    rows[7].size,
  ])
  // bad rows' own files (not shared with good rows), to see they are not deleted
  const keep = path.join(tb.dir, 'keep')
  fs.writeFileSync(keep, 'abc')
  await tb.insert([{ uid: 'keep-mismatch', createdAt: old, location: keep, size: 4 }])
  const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { delete_source_files: true } }), 'json')
  const r = await runCli(['migrate', '--config', cfg, '--json'])
  t.is(r.code, 0, r.stderr)
  const report = JSON.parse(r.stdout.toString())
  const badUids = report.bad.map((b: { uid: string | null }) => b.uid).sort()
  t.deepEqual(badUids, ['bc-date', 'dup', 'dup', 'garbage-location', 'infinite-date', 'keep-mismatch', 'missing-source', 'null-location', 'null-size', 'size-mismatch', null].sort())
  for (const b of report.bad) t.regex(r.stderr, new RegExp(`bad row uid=${JSON.stringify(JSON.stringify(b.uid)).slice(1, -1)}`))
  t.regex(r.stderr, /size mismatch/)
  t.regex(r.stderr, /does not exist/)
  t.is(report.migrated, 20)
  const marked = await tb.knex.raw(`SELECT uid, archived FROM ${tb.table}`)
  for (const row of marked.rows as Array<{ uid: string | null; archived: boolean }>) {
    t.is(row.archived, rows.some((x) => x.uid === row.uid), `row ${row.uid}`)
  }
  t.true(fs.existsSync(keep), "a bad row's source is not deleted")
  // rows[1..7]'s files are named by bad rows too (not archived): kept, and said so.
  const shared = new Set(rows.slice(1, 8).map((x) => x.uid))
  t.deepEqual(report.sources_kept.map((k: { uid: string }) => k.uid).sort(), [...shared].sort())
  t.true(rows.every((x) => fs.existsSync(x.location) === shared.has(x.uid)), 'the other sources of migrated rows are deleted')
  await readAllBack(t, path.join(tb.dir, 'out'), rows, 4)
})

test('a value holding a newline cannot forge a line of the human report on stderr', async (t) => {
  const tb = await freshTable('forged_lines')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 2)
  const forged = '/nowhere\ndes-migrate: migrated 1000000 rows'
  await tb.insert([...rows, { uid: 'forger', createdAt: '2024-01-01T00:00:00Z', location: forged, size: 3 }])
  const r = await runCli(['migrate', '--config', writeConfig(tb.dir, baseConfig(tb), 'json')])
  t.is(r.code, 0, r.stderr)
  const lines = r.stderr.split('\n')
  t.false(lines.some((l) => l.startsWith('des-migrate: migrated 1000000')), r.stderr)
  t.true(lines.some((l) => l.includes('bad row uid="forger"') && l.includes('/nowhere\\ndes-migrate: migrated 1000000 rows')), r.stderr)
})

test.serial('a store folder that cannot be read (not one that is gone) stops the look for its links: links unseen would leave their far ends unguarded', async (t) => {
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'des-links-'))
  fs.mkdirSync(path.join(store, '20240101'))
  const fsp = require('node:fs/promises') as typeof import('node:fs/promises')
  const readdir = fsp.readdir
  const unreadable = path.join(store, '20240101')
  ;(fsp as { readdir: unknown }).readdir = (dir: fs.PathLike, ...rest: unknown[]) =>
    String(dir) === unreadable ? Promise.reject(Object.assign(new Error(`EIO: i/o error, scandir '${unreadable}'`), { code: 'EIO' })) : (readdir as (...a: unknown[]) => unknown)(dir, ...rest)
  t.teardown(() => ((fsp as { readdir: unknown }).readdir = readdir))
  const packer = parseMigrateConfig({ database: { url: 'postgresql://x/y' }, packer: { output_dir: store } }).packer
  const err = await t.throwsAsync(StoreLinks.collect(new LocalSource(store), packer))
  t.is((err as DesError).code, 'DES_IO')
  t.regex(err!.message, /cannot read the store's folder 20240101 to find its links/)
  // Gone since the listing: nothing to follow, no failure.
  fs.rmdirSync(unreadable)
  await t.notThrowsAsync(StoreLinks.collect(new LocalSource(store), packer))
})

test('a failed one-shot cycle ends with one line on stderr, whatever the locations its error names hold', async (t) => {
  // Eleven sources that check out (a link to a /proc file: 0 bytes by its
  // stat) and fail as they are read: the eleventh fails the cycle, and its
  // error names the link, newline and all.
  const tb = await freshTable('forged_failure')
  t.teardown(() => tb.close())
  const links = Array.from({ length: 11 }, (_, i) => {
    const link = path.join(tb.dir, `l${i}\ndes-migrate: cycle ok: migrated 1000000`)
    fs.symlinkSync('/proc/self/status', link)
    return { uid: `proc-${i}`, createdAt: '2024-01-01T00:00:00Z', location: link, size: 0 }
  })
  await tb.insert(links)
  const r = await runCli(['migrate', '--config', writeConfig(tb.dir, baseConfig(tb), 'json')])
  t.not(r.code, 0, r.stderr)
  const lines = r.stderr.split('\n')
  t.true(lines.some((l) => l.includes('migration cycle failed') && l.includes('\\ndes-migrate: cycle ok')), r.stderr)
  t.false(lines.some((l) => l.startsWith('des-migrate: cycle ok')), r.stderr)
})

test('bad rows at the head of the table do not stall the rows behind them', async (t) => {
  const tb = await freshTable('stall')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 10)
  await tb.insert(rows)
  await tb.insert(Array.from({ length: 12 }, (_, i) => ({ uid: `gone${i}`, createdAt: '2020-01-01T00:00:00Z', location: path.join(tb.dir, `gone${i}`), size: 1 })))
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { batch_size: 5 } })))
  t.teardown(() => deps.close())
  const first = await runCycle(deps)
  t.is(first.migrated, 5)
  t.is(first.bad.length, 12)
  const second = await runCycle(deps)
  t.is(second.migrated, 5)
  const archived = await tb.archived()
  t.true(rows.every((x) => archived.get(x.uid)))
})

test("a cycle that selects past bad rows looks for the store's links once, not once per select (a walk of every date folder)", async (t) => {
  const tb = await freshTable('links_once')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 3)
  await tb.insert(rows)
  await tb.insert(Array.from({ length: 12 }, (_, i) => ({ uid: `gone${i}`, createdAt: '2020-01-01T00:00:00Z', location: path.join(tb.dir, `gone${i}`), size: 1 })))
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { batch_size: 5 } })))
  t.teardown(() => deps.close())
  const collect = StoreLinks.collect
  let walks = 0
  // Tests of this file run at once: only this cycle's store counts.
  StoreLinks.collect = (...args) => {
    if (args[0] === deps.store) walks++
    return collect.apply(StoreLinks, args)
  }
  t.teardown(() => (StoreLinks.collect = collect))
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.bad.length, 12)
  t.is(report.migrated, 3)
  t.is(walks, 1)
})

test('a uid already in its shard with another size is a bad row; the rest of the batch migrates', async (t) => {
  const tb = await freshTable('conflict')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 12)
  await tb.insert(rows)
  const outDir = path.join(tb.dir, 'out')
  const other = path.join(tb.dir, 'other')
  fs.writeFileSync(other, Buffer.alloc(rows[0].size + 3, 1))
  await packFiles([{ uid: rows[0].uid, createdAt: rows[0].createdAt, source: other }], { kind: 'local', dir: outDir }, { nBits: 4 })
  const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.migrated, 11)
  t.deepEqual(
    report.bad.map((b) => b.uid),
    [rows[0].uid],
  )
  t.regex(report.bad[0].reason, /already stored/)
  const archived = await tb.archived()
  t.false(archived.get(rows[0].uid))
  await readAllBack(t, outDir, rows.slice(1), 4)
})

test('a created_at or archived column of another type than the table must have fails the cycle as a configuration error (exit 2), nothing archived', async (t) => {
  const tb = await freshTable('coltype')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 2)
  await tb.insert(rows)
  for (const [column, type] of [
    ['archived', "text USING 'false'"],
    ['created_at', 'text'],
  ]) {
    await tb.knex.raw(`ALTER TABLE ${tb.table} ALTER COLUMN ${column} DROP DEFAULT, ALTER COLUMN ${column} TYPE ${type}`)
    const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
    try {
      const report = await runCycle(deps)
      t.is(report.status, 'error', column)
      t.is(report.errorCode, 'DES_CONFIG', `${column}: ${report.error}`)
      t.is(report.migrated, 0)
    } finally {
      await deps.close()
    }
  }
})

/** `tb`'s table made again, partitioned by created_at: one partition before `split`, one from it on. */
async function partitionAt(tb: TestTable, split: string): Promise<void> {
  await tb.knex.raw(`DROP TABLE ${tb.table}`)
  await tb.knex.raw(`CREATE TABLE ${tb.table} (uid text, created_at timestamptz, file_location text, size_bytes bigint, archived boolean NOT NULL DEFAULT false) PARTITION BY RANGE (created_at)`)
  await tb.knex.raw(`CREATE TABLE ${tb.schema}.before_split PARTITION OF ${tb.table} FOR VALUES FROM ('2000-01-01') TO ('${split}')`)
  await tb.knex.raw(`CREATE TABLE ${tb.schema}.from_split PARTITION OF ${tb.table} FOR VALUES FROM ('${split}') TO (MAXVALUE)`)
}

test('a partitioned table: a row is marked by its partition and ctid, not every row of another partition at the same ctid', async (t) => {
  const tb = await freshTable('partitioned')
  t.teardown(() => tb.close())
  await partitionAt(tb, '2025-01-01')
  const [old, young] = makeFiles(tb.dir, 2)
  // Each the first row of its partition: both at ctid (0,1).
  await tb.insert([old, { ...young, createdAt: new Date(Date.now() - 86_400_000).toISOString() }])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.migrated, 1)
  t.deepEqual(
    [...(await tb.archived())].sort(),
    [
      [old.uid, true],
      [young.uid, false],
    ],
  )
})

test('a partitioned table: a bad row at the ctid of a good row of another partition does not keep the good one from being archived', async (t) => {
  const tb = await freshTable('partitioned_bad')
  t.teardown(() => tb.close())
  await partitionAt(tb, '2024-01-10')
  // f0 (2024-01-10) and f1 (2024-01-09): each the first row of its partition, both at ctid (0,1).
  const [good, clash] = makeFiles(tb.dir, 2)
  // f1 is stored already with other bytes of its size: a bad row.
  const other = path.join(tb.dir, 'other')
  fs.writeFileSync(other, Buffer.alloc(clash.size, 0x42))
  await packFiles([{ uid: clash.uid, createdAt: clash.createdAt, source: other }], { kind: 'local', dir: path.join(tb.dir, 'out') }, { nBits: 4 })
  await tb.insert([good, clash])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.deepEqual(
    report.bad.map((b) => b.uid),
    [clash.uid],
  )
  t.is(report.migrated, 1)
  t.deepEqual(
    [...(await tb.archived())].sort(),
    [
      [good.uid, true],
      [clash.uid, false],
    ],
  )
})

test('table and column names come from the config and are quoted safely', async (t) => {
  const cols = { uid: 'File "Uid"', createdAt: 'Created At', location: 'loc;drop', size: 'Bytes', archived: 'Is Archived' }
  const tb = await freshTable('names', cols)
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 8)
  await tb.insert(rows)
  const doc = baseConfig(tb) as { database: Record<string, string> }
  Object.assign(doc.database, {
    uid_column: cols.uid,
    created_at_column: cols.createdAt,
    file_location_column: cols.location,
    size_bytes_column: cols.size,
    archived_column: cols.archived,
  })
  const r = await runCli(['migrate', '--config', writeConfig(tb.dir, doc, 'yaml'), '--json'])
  t.is(r.code, 0, r.stderr)
  t.is(JSON.parse(r.stdout.toString()).migrated, 8)
  const stats = await runCli(['stats', '--db-url', process.env.DES_TEST_PG_URL!, '--table', tb.table, '--cutoff', '2030-01-01Z', '--json', '--created-at-column', cols.createdAt, '--size-bytes-column', cols.size, '--archived-column', cols.archived])
  t.is(stats.code, 0, stats.stderr)
  t.is(JSON.parse(stats.stdout.toString()).count, 0)
})

test('continuous: a cycle every interval until SIGTERM, which finishes the cycle in flight and exits 0; the metrics port serves SPEC §8', async (t) => {
  const tb = await freshTable('continuous')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 30)
  await tb.insert(rows.slice(0, 15))
  const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { batch_size: 10 } }), 'yaml')
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/des-migrate.js'), '--config', cfg, '--continuous', '--interval', '0.3', '--metrics-port', '0'], { cwd: ROOT })
  let stderr = ''
  let stdout = ''
  child.stderr.on('data', (d) => (stderr += d))
  child.stdout.on('data', (d) => (stdout += d))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const waitFor = async (what: () => boolean | Promise<boolean>, label: string) => {
    for (let i = 0; i < 200; i++) {
      if (await what()) return
      await new Promise((r) => setTimeout(r, 100))
    }
    t.fail(`timed out waiting for ${label}\n${stderr}`)
  }
  await waitFor(() => /metrics on port (\d+)/.test(stderr), 'metrics port')
  const port = Number(/metrics on port (\d+)/.exec(stderr)![1])
  await waitFor(async () => [...(await tb.archived()).values()].filter(Boolean).length === 15, 'first rows')
  // Rows arriving later are picked up by a later cycle.
  await tb.insert(rows.slice(15))
  await waitFor(async () => [...(await tb.archived()).values()].every(Boolean), 'later rows')
  await waitFor(() => stdout.includes('selected 0'), 'an idle cycle')
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  t.regex(metrics, /des_migration_cycles_total\{status="success"\} \d+/)
  t.regex(metrics, /des_migration_files_total 30/)
  t.regex(metrics, new RegExp(`des_migration_bytes_total ${rows.reduce((n, x) => n + x.size, 0)}`))
  t.regex(metrics, /des_migration_duration_seconds_count \d+/)
  t.regex(metrics, /des_migration_pending_files 0/)
  t.regex(metrics, /des_migration_batch_size \d+/)
  child.kill('SIGTERM')
  t.is(await exited, 0, stderr)
  t.regex(stderr, /SIGTERM: finishing the cycle in flight/)
  await readAllBack(t, path.join(tb.dir, 'out'), rows, 4)
  t.deepEqual([...allStoredUids(path.join(tb.dir, 'out')).values()].filter((n) => n !== 1), [])
})

test('a source two rows name is deleted only once neither waits for it: archived rows keep it while the other is too young', async (t) => {
  const tb = await freshTable('shared_src')
  t.teardown(() => tb.close())
  const [old] = makeFiles(tb.dir, 1)
  // The same file, named by a row one day old (younger than the 7-day cutoff).
  const young = { uid: 'young', createdAt: new Date(Date.now() - 86_400_000).toISOString(), location: old.location, size: old.size }
  await tb.insert([old, young])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { delete_source_files: true } })))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.migrated, 1)
  t.is(report.deleted, 0)
  t.deepEqual(report.sourcesKept.map((k) => k.uid), [old.uid])
  t.true(fs.existsSync(old.location), 'kept for the row still waiting')
  // Once no row waits for it (the young one archived by hand here), it goes.
  await tb.knex.raw(`UPDATE ${tb.table} SET archived = true WHERE uid = 'young'`)
  await tb.insert([{ ...makeFiles(tb.dir, 1, { prefix: 'later' })[0] }])
  const next = await runCycle(deps)
  t.is(next.migrated, 1)
  t.deepEqual(next.sourcesKept, [])
})

test('a uid stored already with the same size but other bytes is a bad row: not archived, its source kept, the stored file untouched', async (t) => {
  const tb = await freshTable('same_size_other_bytes')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 3)
  const outDir = path.join(tb.dir, 'out')
  const other = path.join(tb.dir, 'other')
  const otherBytes = Buffer.alloc(rows[0].size, 0x42)
  fs.writeFileSync(other, otherBytes)
  await packFiles([{ uid: rows[0].uid, createdAt: rows[0].createdAt, source: other }], { kind: 'local', dir: outDir }, { nBits: 4 })
  await tb.insert(rows)
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { delete_source_files: true } })))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.migrated, 2)
  t.deepEqual(report.bad.map((b) => b.uid), [rows[0].uid])
  t.regex(report.bad[0].reason, /other bytes/)
  t.false((await tb.archived()).get(rows[0].uid))
  t.true(fs.existsSync(rows[0].location), 'its source is kept')
  const got = await readBack(new LocalSource(outDir), rows[0].uid, rows[0].createdAt, 4)
  t.true(got.data!.equals(otherBytes), 'the stored file is the one that was there')
  await readAllBack(t, outDir, rows.slice(1), 4)
})

/**
 * A uid stored by a first cycle, then a second row for it, checked (step 2),
 * whose source `change` alters before its comparison with the stored copy:
 * the rows that comparison finds bad.
 */
async function comparedAfter(t: ExecutionContext, name: string, change: (location: string) => void) {
  const tb = await freshTable(name)
  t.teardown(() => tb.close())
  const [row] = makeFiles(tb.dir, 1)
  await tb.insert([row])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
  t.teardown(() => deps.close())
  t.is((await runCycle(deps)).migrated, 1)
  const checked = checkRow({ ctid: '(0,9)', uid: row.uid, createdAt: row.createdAt, location: row.location, sizeBytes: String(row.size), writtenDate: null }, 4)
  if (!('good' in checked)) throw new Error(checked.bad.reason)
  change(row.location)
  return { uid: row.uid, bad: await sameAsSource(deps, [checked.good]) }
}

test('a source gone between its check and its comparison with the copy stored already is a bad row, not a failed cycle', async (t) => {
  const { uid, bad } = await comparedAfter(t, 'gone_before_compare', (location) => fs.rmSync(location))
  t.deepEqual(
    bad.map((b) => b.uid),
    [uid],
  )
  t.regex(bad[0].reason, /cannot read source .* to compare it with the stored file/)
})

test('a source replaced by a FIFO between its check and its comparison with the copy stored already is a bad row: the open does not wait for a writer', async (t) => {
  const { uid, bad } = await comparedAfter(t, 'fifo_before_compare', (location) => {
    fs.rmSync(location)
    t.is(spawnSync('mkfifo', [location]).status, 0)
  })
  t.deepEqual(
    bad.map((b) => b.uid),
    [uid],
  )
  t.regex(bad[0].reason, /cannot read source .* to compare it with the stored file: it is no longer a regular file/)
})

test('a BigFile damaged between packing and the rerun that finds it stored is not archived, and its source stays', async (t) => {
  const tb = await freshTable('bigfile_rot')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 2, { maxSize: 3000 }).map((r, i) => (i === 0 ? { ...r, size: 5000, data: Buffer.alloc(5000, 7) } : r))
  fs.writeFileSync(rows[0].location, rows[0].data!)
  await tb.insert(rows)
  const cfg = writeConfig(tb.dir, baseConfig(tb, { migration: { delete_source_files: true }, packer: { big_file_threshold: 4000 } }), 'yaml')
  const killed = await runCli(['migrate', '--config', cfg], { env: { DES_TEST_FAULT: 'after-pack' } })
  t.is(killed.code, -1, killed.stderr)
  // Same size, other bytes: only a hash tells.
  const bigDir = fs.readdirSync(path.join(tb.dir, 'out'), { recursive: true }).map(String).find((p) => p.includes('_bigFiles') && /[0-9a-f]{64}$/.test(p))!
  const big = path.join(tb.dir, 'out', bigDir)
  const bytes = fs.readFileSync(big)
  bytes[100] ^= 0xff
  fs.writeFileSync(big, bytes)
  const rerun = await runCli(['migrate', '--config', cfg, '--json'])
  const report = JSON.parse(rerun.stdout.toString())
  t.deepEqual(report.bad.map((b: { uid: string }) => b.uid), [rows[0].uid])
  t.regex(report.bad[0].reason, /sha256/)
  t.not(rerun.code, 0, 'a stored file that fails its check fails the cycle')
  t.false((await tb.archived()).get(rows[0].uid))
  t.true(fs.existsSync(rows[0].location), 'its source is kept')
  t.true((await tb.archived()).get(rows[1].uid))
})

/** A table of two rows migrated (sources deleted once stored), and the one shard they went into. */
async function migratedTwo(t: ExecutionContext, table: string) {
  const tb = await freshTable(table)
  t.teardown(() => tb.close())
  const first = makeFiles(tb.dir, 2)
  await tb.insert(first)
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { delete_source_files: true } })))
  t.teardown(() => deps.close())
  t.is((await runCycle(deps)).migrated, 2)
  const outDir = path.join(tb.dir, 'out')
  const shard = (fs.readdirSync(outDir, { recursive: true }) as string[]).map(String).find((p) => p.endsWith('.des'))!
  return { tb, deps, first, outDir, shard, shardPath: path.join(outDir, shard) }
}

test('a row naming a file of the store itself, or a uid too long for a shard, is a bad row; the rest migrate and the store stays whole', async (t) => {
  const { tb, deps, first, outDir, shard, shardPath } = await migratedTwo(t, 'self_source')
  // The shard spelled another way (through "..") and a uid of 70,000 bytes.
  const spelled = path.join(outDir, 'x', '..', shard)
  const [good] = makeFiles(tb.dir, 1, { prefix: 'next' })
  await tb.insert([
    { uid: 'self', createdAt: first[0].createdAt, location: spelled, size: fs.statSync(shardPath).size },
    { uid: 'x'.repeat(70_000), createdAt: first[0].createdAt, location: good.location, size: good.size },
    good,
  ])
  const report = await runCycle(deps)
  t.is(report.migrated, 1)
  t.deepEqual(report.bad.map((b) => b.uid.slice(0, 10)).sort(), ['self', 'xxxxxxxxxx'])
  t.true(report.bad.some((b) => /a file of the store/.test(b.reason)))
  t.true(report.bad.some((b) => /longer than the 65535/.test(b.reason)))
  t.true(fs.existsSync(shardPath), 'the shard was not deleted')
  await readAllBack(t, outDir, [...first, good], 4)
})

test('a row naming a shard the store holds under another n_bits or layout (a name no reader of this config asks for) is a bad row; that shard is kept', async (t) => {
  const { tb, deps, first, outDir } = await migratedTwo(t, 'self_other_nbits')
  // Shards written when the store was packed with n_bits 8, and with the flat layout: still its files.
  const createdAt = first[0].createdAt
  const old = path.join(tb.dir, 'old')
  fs.writeFileSync(old, 'packed long ago')
  await packFiles([{ uid: 'old', createdAt, source: old }], { kind: 'local', dir: outDir }, { nBits: 8 })
  await packFiles([{ uid: 'old', createdAt, source: old }], { kind: 'local', dir: outDir }, { nBits: 4, layout: 'flat' })
  const files = (fs.readdirSync(outDir, { recursive: true }) as string[]).map(String)
  const wide = files.find((p) => /^\d{8}\/[0-9A-F]{2}\.des$/.test(p))!
  const flat = files.find((p) => /^\d{8}_[0-9A-F]_\d{4}\.des$/.test(p))!
  t.truthy(wide && flat)
  const [good] = makeFiles(tb.dir, 1, { prefix: 'next' })
  await tb.insert([
    { uid: 'wide', createdAt, location: path.join(outDir, wide), size: fs.statSync(path.join(outDir, wide)).size },
    { uid: 'flat', createdAt, location: path.join(outDir, flat), size: fs.statSync(path.join(outDir, flat)).size },
    good,
  ])
  const report = await runCycle(deps)
  t.is(report.migrated, 1)
  t.deepEqual(report.bad.map((b) => [b.uid, /a file of the store being written/.test(b.reason)]).sort(), [['flat', true], ['wide', true]])
  t.true(fs.existsSync(path.join(outDir, wide)) && fs.existsSync(path.join(outDir, flat)), 'the shards were not deleted')
})

test('a row naming the far end of a store\'s link (a linked shard, a linked date folder) or the link itself is a bad row; the linked shards keep their bytes', async (t) => {
  const { tb, deps, first, outDir } = await migratedTwo(t, 'self_linked')
  // Two shards, in two date folders: one shard moved away behind a link, the other's whole date folder.
  const [linkedShard, inLinkedFolder] = (fs.readdirSync(outDir, { recursive: true }) as string[]).map(String).filter((p) => p.endsWith('.des')).sort()
  t.not(path.dirname(linkedShard), path.dirname(inLinkedFolder))
  const vol2 = path.join(tb.dir, 'vol2')
  fs.mkdirSync(vol2)
  fs.renameSync(path.join(outDir, linkedShard), path.join(vol2, 'A.des'))
  fs.symlinkSync(path.join(vol2, 'A.des'), path.join(outDir, linkedShard))
  const vol3 = path.join(tb.dir, 'vol3')
  fs.mkdirSync(vol3)
  fs.renameSync(path.join(outDir, path.dirname(inLinkedFolder)), path.join(vol3, 'day'))
  fs.symlinkSync(path.join(vol3, 'day'), path.join(outDir, path.dirname(inLinkedFolder)))
  const sizeOf = (p: string) => fs.statSync(p).size
  const [good] = makeFiles(tb.dir, 1, { prefix: 'next' })
  const createdAt = first[0].createdAt
  await tb.insert([
    // The far end spelled another way than the link spells it.
    { uid: 'target', createdAt, location: `${vol2}/../vol2/./A.des`, size: sizeOf(path.join(vol2, 'A.des')) },
    { uid: 'link', createdAt, location: path.join(outDir, linkedShard), size: sizeOf(path.join(vol2, 'A.des')) },
    { uid: 'folder', createdAt, location: path.join(vol3, 'day', path.basename(inLinkedFolder)), size: sizeOf(path.join(outDir, inLinkedFolder)) },
    good,
  ])
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.migrated, 1)
  t.deepEqual(report.bad.map((b) => [b.uid, /a file of the store being written/.test(b.reason)]).sort(), [['folder', true], ['link', true], ['target', true]])
  const archived = await tb.archived()
  t.false(archived.get('target') || archived.get('link') || archived.get('folder'))
  t.true(fs.existsSync(path.join(vol2, 'A.des')) && fs.lstatSync(path.join(outDir, linkedShard)).isSymbolicLink(), 'the linked shard and its link are kept')
  t.true(fs.existsSync(path.join(vol3, 'day', path.basename(inLinkedFolder))), 'the shard of the linked date folder is kept')
  await readAllBack(t, outDir, [...first, good], 4)
})

test('the far end of a link in a flat store, in a BigFile folder or behind a linked BigFile folder is a file of the store; a link the store did not make is not', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-links-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = path.join(dir, 'store')
  const away = path.join(dir, 'away')
  fs.mkdirSync(path.join(store, '_bigFiles'), { recursive: true })
  fs.mkdirSync(path.join(store, '20240101'), { recursive: true })
  fs.mkdirSync(path.join(away, 'bf'), { recursive: true })
  const sha = 'ab'.repeat(32)
  for (const f of ['flat.des', 'big', 'notes', 'plain', `bf/${sha}`]) fs.writeFileSync(path.join(away, f), f)
  fs.symlinkSync(path.join(away, 'flat.des'), path.join(store, '20240101_A_0000.des'))
  fs.symlinkSync(path.join(away, 'big'), path.join(store, '_bigFiles', sha))
  fs.symlinkSync(path.join(away, 'bf'), path.join(store, '20240101', '_bigFiles'))
  fs.symlinkSync(path.join(away, 'notes'), path.join(store, 'notes.txt'))
  const source = new LocalSource(store)
  for (const layout of ['flat', 'nested'] as const) {
    const packer = { layout, nBits: 4, bigfilesPrefix: '_bigFiles' } as Parameters<typeof ofTheStore>[2]
    const folders = new FolderKeys(await StoreLinks.collect(source, packer))
    const of = (p: string) => ofTheStore({ kind: 'local', path: p } as Parameters<typeof ofTheStore>[0], source, packer, folders)
    // A `.des` under the other layout's names is still the store's (misnamed), as are BigFiles of either.
    t.true(of(`${away}/./flat.des`), `${layout}: a flat shard's far end`)
    t.is(of(path.join(away, 'big')), layout === 'flat', `${layout}: a BigFile's far end (a flat store's BigFile folder)`)
    t.is(of(path.join(away, 'bf', sha)), layout === 'nested', `${layout}: a BigFile behind a linked BigFile folder (a nested store's)`)
    t.false(of(path.join(away, 'notes')), `${layout}: the far end of a link the store did not make`)
    t.false(of(path.join(away, 'plain')), `${layout}: a file no link names`)
  }
})

test('a uid of megabytes or a file_location longer than any path is a bad row reported by its first characters and its length, never whole', async (t) => {
  const { tb, deps, first, outDir } = await migratedTwo(t, 'huge_values')
  const [good] = makeFiles(tb.dir, 1, { prefix: 'next' })
  await tb.insert([
    { uid: 'u'.repeat(2_000_000), createdAt: first[0].createdAt, location: good.location, size: good.size },
    { uid: 'far', createdAt: first[0].createdAt, location: path.join(tb.dir, 'l'.repeat(100_000)), size: 5 },
    good,
  ])
  const report = await runCycle(deps)
  t.is(report.migrated, 1)
  const bad = [...report.bad].sort((a, b) => a.reason.localeCompare(b.reason))
  t.deepEqual(bad.map((b) => [b.uid, b.reason]), [
    ['far', 'file_location of ' + Buffer.byteLength(path.join(tb.dir, 'l'.repeat(100_000))) + ' bytes is longer than a path or an S3 key can be'],
    ['u'.repeat(64) + '…', 'uid of 2000000 bytes is longer than the 65535 a shard can hold'],
  ])
  await readAllBack(t, outDir, [...first, good], 4)
})

test('a source that checks out but fails as it is read is a bad row, and the rest of the batch migrates: it does not fail every cycle', async (t) => {
  const tb = await freshTable('fails_in_pack')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 4)
  // Stat says 0 bytes, as the row says; reading it gives more: a source whose read fails its check.
  const failing = { uid: 'proc-status', createdAt: rows[0].createdAt, location: '/proc/self/status', size: 0 }
  await tb.insert([...rows.slice(0, 2), failing, ...rows.slice(2)])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.migrated, rows.length)
  t.deepEqual(
    report.bad.map((b) => b.uid),
    [failing.uid],
  )
  t.regex(report.bad[0].reason, /failed as it was read: .*more than 0 bytes/)
  t.false((await tb.archived()).get(failing.uid))
  await readAllBack(t, path.join(tb.dir, 'out'), rows, 4)
})

test('a row whose location cannot be reached (through a file, a link loop) is a bad row; the rest of the batch migrates', async (t) => {
  const tb = await freshTable('unreachable_src')
  t.teardown(() => tb.close())
  const [good, other] = makeFiles(tb.dir, 2)
  const loop = path.join(tb.dir, 'loop')
  fs.symlinkSync(loop, loop)
  // The store's folder exists (a cycle ran before): each source's folders are looked at.
  fs.mkdirSync(path.join(tb.dir, 'out'))
  await tb.insert([
    { uid: 'through', createdAt: good.createdAt, location: path.join(other.location, 'x', 'y'), size: 1 },
    { uid: 'looped', createdAt: good.createdAt, location: path.join(loop, 'x', 'y'), size: 1 },
    good,
  ])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.migrated, 1)
  t.deepEqual(report.bad.map((b) => b.uid).sort(), ['looped', 'through'])
  await readAllBack(t, path.join(tb.dir, 'out'), [good], 4)
})

/** Mounts `from` a second time at `at` (root only); false where mounting is not allowed. */
function bindMount(from: string, at: string): boolean {
  fs.mkdirSync(at, { recursive: true })
  return spawnSync('mount', ['--bind', from, at]).status === 0
}
const canBindMount = (() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-bind-'))
  const ok = bindMount(dir, path.join(dir, 'again'))
  if (ok) spawnSync('umount', [path.join(dir, 'again')])
  fs.rmSync(dir, { recursive: true, force: true })
  return ok
})()

;(canBindMount ? test : test.skip)('a row naming a shard of the store through a second mount of its folder is a bad row; the shard is kept', async (t) => {
  const { tb, deps, first, outDir, shard, shardPath } = await migratedTwo(t, 'self_bind')
  const mounted = path.join(tb.dir, 'mounted')
  t.true(bindMount(outDir, mounted))
  t.teardown(() => void spawnSync('umount', [mounted]))
  const [good] = makeFiles(tb.dir, 1, { prefix: 'next' })
  await tb.insert([{ uid: 'self', createdAt: first[0].createdAt, location: path.join(mounted, shard), size: fs.statSync(shardPath).size }, good])
  const report = await runCycle(deps)
  t.is(report.migrated, 1)
  t.deepEqual(report.bad.map((b) => [b.uid, /a file of the store being written/.test(b.reason)]), [['self', true]])
  t.true(fs.existsSync(shardPath), 'the shard was not deleted')
  await readAllBack(t, outDir, [...first, good], 4)
})

test('a uid another writer stores between the check before packing and the pack (the packer skips it) is compared with its source too: other bytes are a bad row, its source kept', async (t) => {
  const tb = await freshTable('stored_meanwhile')
  t.teardown(() => tb.close())
  const src = path.join(tb.dir, 'src')
  fs.mkdirSync(src, { recursive: true })
  const mine = path.join(src, 'mine.bin')
  const theirs = path.join(src, 'theirs.bin')
  fs.writeFileSync(mine, Buffer.alloc(100, 0x41))
  fs.writeFileSync(theirs, Buffer.alloc(100, 0x42))
  const createdAt = '2024-01-10T12:00:00Z'
  await tb.insert([{ uid: 'u1', createdAt, location: mine, size: 100 }])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { delete_source_files: true } })))
  t.teardown(() => deps.close())
  // des pack (which takes no advisory lock) stores u1 with other bytes just as the cycle first
  // looks at the key; that look still sees no shard, so the row goes to the packer, which skips it.
  const store = deps.store as LocalSource
  const look = store.localEtag.bind(store)
  let first = true
  store.localEtag = async (key: string) => {
    if (!first) return look(key)
    first = false
    await packFiles([{ uid: 'u1', createdAt, source: theirs, sizeBytes: 100 }], { kind: 'local', dir: path.join(tb.dir, 'out') }, { nBits: 4 })
    throw new DesError('DES_NOT_FOUND', `no object ${key}`)
  }
  const report = await runCycle(deps)
  t.is(report.migrated, 0)
  t.deepEqual(report.bad.map((b) => b.uid), ['u1'])
  t.regex(report.bad[0].reason, /other bytes/)
  t.true(fs.existsSync(mine), 'its source is kept')
  t.false((await tb.archived()).get('u1'))
})

test('a source rewritten after it was read (between the pack and its deletion) is not deleted: its new bytes are stored nowhere', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-delete-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const rows = ['same', 'resized', 'rewritten'].map((uid, i) => {
    const location = path.join(dir, uid)
    fs.writeFileSync(location, 'read')
    return { ctid: `(0,${i + 1})`, uid, createdAt: '2024-01-01T00:00:00Z', size: 4, location, source: parseLocation(location)!, fileId: localFileId(location), dateDir: '20240101', shardHex: '0', shardIndex: 0 }
  })
  const readAt = Date.now()
  // Another writer, while the cycle marks and commits: one file grows, one is rewritten with as many bytes.
  fs.writeFileSync(rows[1].location, 'new bytes')
  fs.writeFileSync(rows[2].location, 'newb')
  fs.utimesSync(rows[2].location, new Date(readAt + 2000), new Date(readAt + 2000))
  const table = { locationsStillNamed: async () => new Set<string>() }
  const r = await deleteSources({ table } as unknown as CycleDeps, rows, readAt)
  t.is(r.deleted, 1)
  t.false(fs.existsSync(rows[0].location))
  // In the order their checks finished (they run at once): by uid here.
  const errors = [...r.errors].sort((a, b) => (a.uid! < b.uid! ? -1 : 1))
  t.deepEqual(
    errors.map((e) => e.uid),
    ['resized', 'rewritten'],
  )
  t.regex(errors[0].reason, /not deleted: it is now 9 bytes, 4 were stored/)
  t.regex(errors[1].reason, /not deleted: it was changed at .*, after the cycle began/)
  t.true(fs.existsSync(rows[1].location) && fs.existsSync(rows[2].location))
})

test('a source rewritten in place after it was checked is not deleted, whatever the file server\'s clock says (NFS behind the migrator)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-delete-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const location = path.join(dir, 'skewed')
  fs.writeFileSync(location, 'read')
  // Times a day old, so the rewrite below changes them whatever the file system's time granularity.
  fs.utimesSync(location, new Date(Date.now() - 86_400_000), new Date(Date.now() - 86_400_000))
  const row = { ctid: '(0,1)', tableoid: '1', uid: 'skewed', createdAt: '2024-01-01T00:00:00Z', size: 4, location, source: parseLocation(location)!, ...localFileSeen(location), dateDir: '20240101', shardHex: '0', shardIndex: 0 }
  fs.writeFileSync(location, 'newb')
  // The cycle began at a time the file server's clock has not reached yet (its clock is behind ours):
  // the rewrite's times are before it, and only a comparison with the times seen at the check tells.
  const cycleBegan = Date.now() + 3_600_000
  const table = { locationsStillNamed: async () => new Set<string>() }
  const r = await deleteSources({ table } as unknown as CycleDeps, [row], cycleBegan)
  t.is(r.deleted, 0)
  t.regex(r.errors[0]?.reason ?? '', /not deleted: it was changed after it was checked/)
  t.is(fs.readFileSync(location, 'utf8'), 'newb')
})

test('a source replaced after it was read by a copy that keeps its origin\'s older times (cp -p, rsync -a) is not deleted either', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-delete-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const location = path.join(dir, 'synced')
  fs.writeFileSync(location, 'read')
  const row = { ctid: '(0,1)', tableoid: '1', uid: 'synced', createdAt: '2024-01-01T00:00:00Z', size: 4, location, source: parseLocation(location)!, fileId: localFileId(location), dateDir: '20240101', shardHex: '0', shardIndex: 0 }
  // Read before now, as if the cycle had begun a minute ago; the copy arrives since, dated a day before.
  const readAt = Date.now() - 60_000
  const copy = path.join(dir, 'incoming')
  fs.writeFileSync(copy, 'newb')
  fs.utimesSync(copy, new Date(readAt - 86_400_000), new Date(readAt - 86_400_000))
  fs.renameSync(copy, location)
  const table = { locationsStillNamed: async () => new Set<string>() }
  const r = await deleteSources({ table } as unknown as CycleDeps, [row], readAt)
  t.is(r.deleted, 0)
  t.regex(r.errors[0]?.reason ?? '', /not deleted: it was changed at .*, after the cycle began/)
  t.is(fs.readFileSync(location, 'utf8'), 'newb')
})

test('a source whose folder is swapped, after it was read, for another holding a file of that name, size and older times is not deleted: that file is stored nowhere', async (t) => {
  const tb = await freshTable('folder_swapped')
  t.teardown(() => tb.close())
  const [row] = makeFiles(tb.dir, 1)
  const src = path.dirname(row.location)
  // Another folder, written before the cycle begins: a file of the same name and size, other bytes.
  const other = path.join(tb.dir, 'other')
  fs.mkdirSync(other)
  const otherBytes = Buffer.alloc(row.size, 0x42)
  fs.writeFileSync(path.join(other, path.basename(row.location)), otherBytes)
  await tb.insert([row])
  const deps = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { delete_source_files: true } })))
  t.teardown(() => deps.close())
  // Once the row is stored and verified, as the cycle marks it: the folders trade places (two renames keep every file's times).
  const mark = deps.table.markArchived.bind(deps.table)
  deps.table.markArchived = async (trx, rows) => {
    fs.renameSync(src, `${src}.old`)
    fs.renameSync(other, src)
    return mark(trx, rows)
  }
  const report = await runCycle(deps)
  t.is(report.migrated, 1)
  t.is(report.deleted, 0)
  t.deepEqual(report.deleteErrors.map((e) => e.uid), [row.uid])
  t.regex(report.deleteErrors[0].reason, /not deleted: it is another file than the one checked and read/)
  t.deepEqual(fs.readFileSync(row.location), otherBytes, 'the file now at the path is kept')
  await readAllBack(t, path.join(tb.dir, 'out'), [row], 4)
})

test('sources of archived rows that cannot be cleared with the database (gone after the commit) are each named in the report, and kept', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-delete-'))
  const rows = ['a', 'b'].map((uid) => {
    const location = path.join(dir, uid)
    fs.writeFileSync(location, uid)
    return { ctid: `(0,${uid === 'a' ? 1 : 2})`, uid, createdAt: '2024-01-01T00:00:00Z', size: 1, location, source: parseLocation(location)!, dateDir: '20240101', shardHex: '0', shardIndex: 0 }
  })
  const table = { locationsStillNamed: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')) }
  const deps = { table } as unknown as CycleDeps
  const r = await deleteSources(deps, rows)
  t.is(r.deleted, 0)
  t.deepEqual(r.errors.map((e) => e.uid), ['a', 'b'])
  for (const e of r.errors) t.regex(e.reason, new RegExp(`source ${dir}/${e.uid} not deleted: the database could not say .*ECONNREFUSED.*delete it by hand`))
  t.true(fs.existsSync(rows[0].location) && fs.existsSync(rows[1].location))
})
