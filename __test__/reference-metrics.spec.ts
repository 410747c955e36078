// The metrics a deployment of the original DES watches keep working here.
// The series below are every metric and label that the reference's own
// example Grafana dashboard and Prometheus alert rules (its repository's
// examples/) query, plus the label values SPEC §8 fixes; each must be in our
// exposition and move when its event happens: cycles that succeed and fail,
// files and bytes migrated, the pending gauge, cycle durations, retrievals
// served and missed, s3:// sources read.

import test from 'ava'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { parseMigrateConfig } from '../src/config/migrate'
import { loadZones } from '../src/config/zones'
import { createDeps, runCycles } from '../src/migrate/run'
import { registry, retrievalSeconds, sourceReadSeconds, zeroServeSeries } from '../src/metrics'
import { packFiles } from '../src/pack'
import { createServer } from '../src/serve/server'
import { LocalSource } from '../src/storage/local'
import { singleSource } from '../src/storage/source'
import { zonedS3Sources } from '../src/storage/zones'
import { Store } from '../src/store/store'
import { baseConfig, freshTable, makeFiles } from './helpers/migrate'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { closeServer, listenLocal, payload, tempDir, uploadDir, writeStore, type TestFile } from './helpers/store'

/** Every sample of the exposition, `name{labels}` → value. */
async function scrape(): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const line of (await registry.metrics()).split('\n')) {
    const m = /^([a-z0-9_]+(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m) out.set(m[1], Number(m[2]))
  }
  return out
}

/** The sum of the samples of `name` whose labels include every `label="value"` of `want`. */
function sum(samples: Map<string, number>, name: string, want: Record<string, string> = {}): number | undefined {
  let total: number | undefined
  for (const [series, v] of samples) {
    const m = /^([a-z0-9_]+)(?:\{(.*)\})?$/.exec(series)!
    if (m[1] !== name) continue
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(want).every(([k, v2]) => labels[k] === v2)) total = (total ?? 0) + v
  }
  return total
}

/** The `le` texts of the reference's histograms, as its client library writes them (its default buckets, or the ones it sets). */
const REFERENCE_LE = {
  default: ['0.005', '0.01', '0.025', '0.05', '0.075', '0.1', '0.25', '0.5', '0.75', '1.0', '2.5', '5.0', '7.5', '10.0', '+Inf'],
  migrationDuration: ['1.0', '5.0', '10.0', '30.0', '60.0', '120.0', '300.0', '+Inf'],
}

/** The `le` labels of the `_bucket` lines of `name` whose other labels are `others` (as written), in exposition order. */
function leOf(text: string, name: string, others = ''): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const m = /^([a-z0-9_]+)\{(.*)\} \S+$/.exec(line)
    if (!m || m[1] !== `${name}_bucket`) continue
    const labels = m[2].split(',')
    const le = labels.find((l) => l.startsWith('le='))!
    if (labels.filter((l) => l !== le).join(',') === others) out.push(le.slice(4, -1))
  }
  return out
}

test.serial('histograms have the reference\'s buckets, each `le` written as its client writes it ("1.0", "5.0", not "1", "5")', async (t) => {
  retrievalSeconds.labels('le-check').observe(0.2)
  sourceReadSeconds.labels('le-check').observe(3)
  const text = await registry.metrics()
  t.deepEqual(leOf(text, 'des_retrieval_seconds', 'backend="le-check"'), REFERENCE_LE.default)
  t.deepEqual(leOf(text, 'des_s3_source_read_seconds', 'status="le-check"'), REFERENCE_LE.default)
  t.deepEqual(leOf(text, 'des_migration_duration_seconds'), REFERENCE_LE.migrationDuration)
  t.regex(text, /^des_retrieval_seconds_bucket\{le="0\.25",backend="le-check"\} 1$/m)
  t.regex(text, /^des_retrieval_seconds_bucket\{le="0\.1",backend="le-check"\} 0$/m)
  t.regex(text, /^des_s3_source_read_seconds_bucket\{le="5\.0",status="le-check"\} 1$/m)
  // Every des_ histogram, ours too, writes its bounds the same way.
  t.deepEqual(text.split('\n').filter((l) => /^des_\w+_bucket\{(?:.*,)?le="\d+"/.test(l)), [])
})

test.serial('migration: every series the reference\'s example dashboard and alerts query exists and moves with its event', async (t) => {
  const tb = await freshTable('refmetrics')
  try {
    const rows = makeFiles(tb.dir, 12)
    await tb.insert(rows)
    const before = await scrape()
    // A cycle that migrates 7 of the 12 rows (batch size 7).
    const ok = createDeps(parseMigrateConfig(baseConfig(tb, { migration: { batch_size: 7 } })))
    try {
      t.is((await runCycles(ok))!.status, 'success')
    } finally {
      await ok.close()
    }
    // A cycle that fails: its database does not answer.
    const broken = baseConfig(tb, { migration: { batch_size: 7 } }) as { database: Record<string, unknown> }
    broken.database.url = 'postgres://des:des@127.0.0.1:1/des'
    const bad = createDeps(parseMigrateConfig(broken))
    try {
      t.is((await runCycles(bad))!.status, 'error')
    } finally {
      await bad.close()
    }
    const after = await scrape()
    const moved = (name: string, labels?: Record<string, string>) => (sum(after, name, labels) ?? NaN) - (sum(before, name, labels) ?? 0)
    // The example alert rules: failure rate over all cycles (ignoring status), and the backlog.
    t.is(moved('des_migration_cycles_total', { status: 'failure' }), 1)
    t.is(moved('des_migration_cycles_total', { status: 'success' }), 1)
    t.is(moved('des_migration_cycles_total'), 2, 'the denominator of the failure-rate alert counts both')
    t.is(sum(after, 'des_migration_pending_files'), 12, 'the backlog gauge: rows waiting as the good cycle began (the failed one could not count them)')
    // The example dashboard: cycles by status, files and bytes rates, duration quantiles from buckets.
    t.is(moved('des_migration_files_total'), 7)
    t.is(moved('des_migration_bytes_total'), rows.slice(0, 12).sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1)).slice(0, 7).reduce((n, r) => n + r.size, 0))
    t.is(moved('des_migration_duration_seconds_bucket', { le: '+Inf' }), 2)
    t.is(moved('des_migration_duration_seconds_count'), 2)
    // SPEC §8: the configured batch size, not what a cycle selected.
    t.is(sum(after, 'des_migration_batch_size'), 7)
  } finally {
    await tb.close()
  }
})

test.serial('migration counts as the reference does: files_total is every row a cycle processed, a failed one included; pending is the backlog as the cycle began', async (t) => {
  const tb = await freshTable('refcount')
  try {
    const rows = makeFiles(tb.dir, 4)
    fs.rmSync(rows[1].location)
    await tb.insert(rows)
    const good = rows.filter((_, i) => i !== 1)
    const deps = createDeps(parseMigrateConfig(baseConfig(tb)))
    try {
      const before = await scrape()
      const first = (await runCycles(deps))!
      t.is(first.status, 'success')
      t.is(first.migrated, 3)
      const mid = await scrape()
      const moved = (from: Map<string, number>, to: Map<string, number>, name: string) => (sum(to, name) ?? NaN) - (sum(from, name) ?? 0)
      t.is(moved(before, mid, 'des_migration_files_total'), 4, 'the row whose source is missing is counted too')
      t.is(moved(before, mid, 'des_migration_files_migrated_total'), 3, 'ours: only the rows migrated')
      t.is(moved(before, mid, 'des_migration_bytes_total'), good.reduce((n, r) => n + r.size, 0))
      t.is(sum(mid, 'des_migration_pending_files'), 4, 'measured before the cycle: all four were waiting')
      // The bad row stays unarchived: the next cycle processes it again, and began with it pending.
      t.is((await runCycles(deps))!.migrated, 0)
      const after = await scrape()
      t.is(moved(mid, after, 'des_migration_files_total'), 1)
      t.is(moved(mid, after, 'des_migration_files_migrated_total'), 0)
      t.is(sum(after, 'des_migration_pending_files'), 1)
      t.is(moved(before, after, 'des_migration_duration_seconds_count'), 2)
      // A dry run (ours) is a `dry_run` cycle and nothing else.
      t.true((await runCycles(deps, { dryRun: true }))!.dryRun)
      const dry = await scrape()
      t.is(sum(dry, 'des_migration_cycles_total', { status: 'dry_run' })! - sum(after, 'des_migration_cycles_total', { status: 'dry_run' })!, 1)
      for (const name of ['des_migration_files_total', 'des_migration_files_migrated_total', 'des_migration_bytes_total', 'des_migration_duration_seconds_count']) t.is(moved(after, dry, name), 0, name)
    } finally {
      await deps.close()
    }
  } finally {
    await tb.close()
  }
})

test.serial('retrieval and source reads: the reference\'s label values (ok/error, success/error) and its _total bytes counter move', async (t) => {
  const dir = tempDir()
  const day = '2024-03-01T10:00:00Z'
  await writeStore(dir, [{ uid: 'here', createdAt: day, data: payload(500, 1) }])
  const server = createServer({ store: new Store({ sources: singleSource(new LocalSource(dir)), nBits: 8 }) })
  const url = await listenLocal(server)
  const before = await scrape()
  try {
    t.is((await fetch(`${url}/files/here?created_at=${day}`)).status, 200)
    t.is((await fetch(`${url}/files/gone?created_at=${day}`)).status, 404)
  } finally {
    await closeServer(server)
  }
  const client = testS3Client()
  const src = await freshBucket(client, 'refm-src')
  const body = payload(3000, 2)
  await client.send(new PutObjectCommand({ Bucket: src, Key: 'in/a', Body: body }))
  await packFiles([{ uid: 'a', createdAt: day, sizeBytes: body.length, source: `s3://${src}/in/a` }], { kind: 'local', dir: path.join(dir, 'out') }, { sourceS3: { client } })
  await t.throwsAsync(packFiles([{ uid: 'b', createdAt: day, source: `s3://${src}/in/missing` }], { kind: 'local', dir: path.join(dir, 'out') }, { sourceS3: { client } }))
  const after = await scrape()
  const moved = (name: string, labels?: Record<string, string>) => (sum(after, name, labels) ?? NaN) - (sum(before, name, labels) ?? 0)
  t.is(moved('des_retrievals_total', { backend: 'local', status: 'ok' }), 1)
  t.is(moved('des_retrievals_total', { backend: 'local', status: 'error' }), 1)
  t.is(moved('des_retrievals_total', { backend: 'local', status: 'error', code: '404' }), 1, 'our HTTP code rides along')
  t.is(moved('des_retrieval_seconds_count', { backend: 'local' }), 2)
  t.is(moved('des_s3_source_reads_total', { status: 'success' }), 1)
  t.is(moved('des_s3_source_read_seconds_count', { status: 'success' }), 1)
  t.is(moved('des_s3_source_bytes_downloaded_total'), body.length)
})

test.serial('zones (multi_s3) count as backend="s3" in every retrieval and S3 call metric, as the reference\'s zone retrievers do', async (t) => {
  const env = s3TestEnv()
  const client = testS3Client()
  const [low, high] = [await freshBucket(client, 'refm-za'), await freshBucket(client, 'refm-zb')]
  const dir = tempDir()
  const day = '2024-03-01T10:00:00Z'
  const files: TestFile[] = []
  for (let i = 0; i < 8; i++) files.push({ uid: `z${i}`, createdAt: day, data: payload(200 + i, i) })
  await writeStore(dir, files, { nBits: 4 })
  await uploadDir(client, low, dir, '', (k) => /\/[0-7]\.des$/.test(k))
  await uploadDir(client, high, dir, '', (k) => /\/[89A-F]\.des$/.test(k))
  const zonesFile = path.join(dir, 'zones.json')
  const zone = (name: string, start: number, end: number, bucket: string) => ({ name, range: { start, end }, s3: { bucket, region_name: 'us-east-1', endpoint_url: env.endpoint } })
  fs.writeFileSync(zonesFile, JSON.stringify({ n_bits: 4, zones: [zone('low', 0, 7, low), zone('high', 8, 15, high)] }))
  const zones = loadZones(zonesFile)
  const store = new Store({ sources: zonedS3Sources(zones), nBits: zones.nBits })
  zeroServeSeries(store.backend, { payloadCache: false })
  const server = createServer({ store })
  const url = await listenLocal(server)
  const before = await scrape()
  try {
    for (const f of files) t.is((await fetch(`${url}/files/${f.uid}?created_at=${day}`)).status, 200, f.uid)
    t.is((await fetch(`${url}/files/gone?created_at=${day}`)).status, 404)
  } finally {
    await closeServer(server)
  }
  const after = await scrape()
  const moved = (name: string, labels?: Record<string, string>) => (sum(after, name, labels) ?? NaN) - (sum(before, name, labels) ?? 0)
  t.is(moved('des_retrievals_total', { backend: 's3', status: 'ok' }), files.length)
  t.is(moved('des_retrievals_total', { backend: 's3', status: 'error' }), 1)
  t.is(moved('des_retrieval_seconds_count', { backend: 's3' }), files.length + 1)
  t.true(moved('des_s3_range_calls_total', { backend: 's3', type: 'payload' }) >= files.length)
  // `/ready` and the start-up line still say multi_s3: only the metrics speak the reference's label.
  t.is(store.backend, 'multi_s3')
  t.deepEqual([...after.keys()].filter((series) => series.includes('backend="multi_s3"')), [])
})
