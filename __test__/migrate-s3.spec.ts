// Migration into an S3 store (real MinIO), from s3:// sources too; a kill -9
// mid-pack then a rerun; every archived uid read back through the store's S3
// source (tail read + range read) and compared.

import test from 'ava'
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { runCli } from './helpers/cli'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { baseConfig, freshTable, makeFiles, readBack, writeConfig, type TestRow } from './helpers/migrate'
import { S3Source } from '../src/storage/s3'
import { LocalSource } from '../src/storage/local'
import { locateShard } from '../src/native'
import { runPack } from '../src/pack'
import { errorCode } from '../src/errors'
import { tempDir } from './helpers/pack'
import { parseMigrateConfig } from '../src/config/migrate'
import { createDeps } from '../src/migrate/run'
import { deleteSources, packPast, runCycle, type CycleDeps, type GoodRow } from '../src/migrate/cycle'
import { checkLocations, parseLocation } from '../src/migrate/sources'
import { recordingClient } from './helpers/backends'

function s3Config(tb: { table: string; dir: string }, bucket: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const env = s3TestEnv()
  const doc = baseConfig(tb, { migration: { batch_size: 1000, ...over } }) as { packer: Record<string, unknown> }
  delete doc.packer.output_dir
  doc.packer.s3 = { bucket, prefix: 'archive/', region_name: env.region, endpoint_url: '${S3_ENDPOINT}' }
  doc.packer.s3_source = { enabled: true, region_name: env.region, endpoint_url: env.endpoint, max_retries: 2, retry_delay_seconds: 0.1 }
  return doc
}

async function exists(client: S3Client, bucket: string, key: string): Promise<boolean> {
  const list = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key }))
  return (list.Contents ?? []).some((o) => o.Key === key)
}

async function checkAll(t: { true: (v: boolean, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void }, store: S3Source, rows: TestRow[], nBits = 4) {
  for (const r of rows) {
    const got = await readBack(store, r.uid, r.createdAt, nBits)
    t.is(got.copies, 1, `${r.uid} stored once`)
    t.true(got.data?.equals(r.data!) ?? false, `${r.uid} reads back from S3 with its bytes`)
  }
}

test('migrating into S3 from local and s3:// sources: every uid reads back through the S3 store; s3 sources deleted', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'mig-out')
  const srcBucket = await freshBucket(client, 'mig-src')
  const tb = await freshTable('s3')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 40)
  // Half the rows point at copies in a source bucket.
  for (const r of rows.slice(0, 20)) {
    await client.send(new PutObjectCommand({ Bucket: srcBucket, Key: `in/${r.uid}`, Body: r.data }))
    r.location = `s3://${srcBucket}/in/${r.uid}`
  }
  await tb.insert([...rows, { uid: 's3-missing', createdAt: '2024-01-01T00:00:00Z', location: `s3://${srcBucket}/in/none`, size: 3 }])
  const cfg = writeConfig(tb.dir, s3Config(tb, bucket, { delete_source_files: true }), 'yaml')
  const r = await runCli(['migrate', '--config', cfg, '--json'], { env: { S3_ENDPOINT: s3TestEnv().endpoint } })
  t.is(r.code, 0, r.stderr)
  const report = JSON.parse(r.stdout.toString())
  t.is(report.migrated, 40)
  t.deepEqual(
    report.bad.map((b: { uid: string }) => b.uid),
    ['s3-missing'],
  )
  t.true(report.shard_keys.every((k: string) => k.startsWith('archive/')))
  await checkAll(t, new S3Source(client, { bucket, prefix: 'archive/' }), rows)
  for (const row of rows.slice(0, 20)) t.false(await exists(client, srcBucket, `in/${row.uid}`), `s3 source of ${row.uid} deleted`)
  const sample = await client.send(new GetObjectCommand({ Bucket: bucket, Key: report.shard_keys[0] }))
  t.is(sample.$metadata.httpStatusCode, 200)
})

test('S3 store: kill -9 half-way through packing, then a rerun archives every row once', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'mig-crash')
  const tb = await freshTable('s3_crash')
  t.teardown(() => tb.close())
  // Many more keys than the packer writes to S3 at once (S3_KEYS_AT_ONCE):
  // half-way through, some keys are stored and others not yet.
  const rows = makeFiles(tb.dir, 120)
  await tb.insert(rows)
  const doc = s3Config(tb, bucket, { delete_source_files: true }) as { packer: Record<string, unknown> }
  doc.packer.n_bits = 8
  const cfg = writeConfig(tb.dir, doc, 'json')
  const env = { S3_ENDPOINT: s3TestEnv().endpoint }
  const killed = await runCli(['migrate', '--config', cfg], { env: { ...env, DES_TEST_FAULT: 'in-pack' } })
  t.is(killed.code, -1, killed.stderr)
  t.true([...(await tb.archived()).values()].every((a) => !a))
  const rerun = await runCli(['migrate', '--config', cfg, '--json'], { env })
  t.is(rerun.code, 0, rerun.stderr)
  const report = JSON.parse(rerun.stdout.toString())
  t.is(report.migrated, 120)
  t.true(report.already_stored > 0, `some were stored before the kill (${report.already_stored})`)
  const archived = await tb.archived()
  t.true(rows.every((x) => archived.get(x.uid)))
  await checkAll(t, new S3Source(client, { bucket, prefix: 'archive/' }), rows, 8)
})

test('one cycle asks S3 about each s3:// source once (a HEAD) and reads it once (a GET)', async (t) => {
  const client = testS3Client()
  const srcBucket = await freshBucket(client, 'mig-once')
  const tb = await freshTable('s3_once')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 12)
  for (const r of rows) {
    await client.send(new PutObjectCommand({ Bucket: srcBucket, Key: `in/${r.uid}`, Body: r.data }))
    r.location = `s3://${srcBucket}/in/${r.uid}`
  }
  await tb.insert(rows)
  const env = s3TestEnv()
  const doc = baseConfig(tb, { migration: { batch_size: 100 } }) as { packer: Record<string, unknown> }
  doc.packer.s3_source = { enabled: true, region_name: env.region, endpoint_url: env.endpoint }
  const deps = createDeps(parseMigrateConfig(doc))
  t.teardown(() => deps.close())
  const { sent } = recordingClient(deps.sourceS3!)
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.migrated, 12)
  for (const r of rows) {
    const key = `/${srcBucket}/in/${r.uid}`
    t.is(sent.filter((s) => s.method === 'HEAD' && s.key === key).length, 1, `${r.uid}: checked once`)
    t.is(sent.filter((s) => s.method === 'GET' && s.key === key).length, 1, `${r.uid}: read once`)
  }
})

test("a cycle that adds to existing S3 shards reads each part's index once before and once after", async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'mig-reads')
  const tb = await freshTable('s3_reads')
  t.teardown(() => tb.close())
  await tb.insert(makeFiles(tb.dir, 30, { prefix: 'first-' }))
  const doc = s3Config(tb, bucket) as { packer: { s3: Record<string, unknown> } }
  doc.packer.s3.endpoint_url = s3TestEnv().endpoint
  const deps = createDeps(parseMigrateConfig(doc))
  t.teardown(() => deps.close())
  const first = await runCycle(deps)
  t.is(first.status, 'success', first.error)
  // The second batch lands in the same 3 days x 16 shards, mostly in shards that exist.
  const rows = makeFiles(tb.dir, 30, { prefix: 'second-' })
  await tb.insert(rows)
  const { sent } = recordingClient((deps.target as { client: S3Client }).client)
  const second = await runCycle(deps)
  t.is(second.status, 'success', second.error)
  t.is(second.migrated, 30)
  const existed = second.shardKeys.filter((k) => first.shardKeys.includes(k))
  t.true(existed.length > 0, 'the second cycle added to shards the first wrote')
  for (const key of existed) {
    // A suffix GET is an index read (the payload read-back asks for a range with a start).
    const indexReads = sent.filter((s) => s.method === 'GET' && s.key === `/${bucket}/${key}` && /^bytes=-\d+$/.test(s.range ?? ''))
    t.is(indexReads.length, 2, `${key}: ${indexReads.length} index reads`)
  }
  await checkAll(t, new S3Source(client, { bucket, prefix: 'archive/' }), rows)
})

test('a row naming a shard of the S3 store by a key the server cleans to it (/prefix/..., x/../prefix/...) is a bad row; the shard is kept', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'mig-self')
  const tb = await freshTable('s3_self')
  t.teardown(() => tb.close())
  const rows = makeFiles(tb.dir, 2)
  await tb.insert(rows)
  const doc = s3Config(tb, bucket, { delete_source_files: true }) as { packer: { s3: Record<string, unknown> } }
  doc.packer.s3.endpoint_url = s3TestEnv().endpoint
  const deps = createDeps(parseMigrateConfig(doc))
  t.teardown(() => deps.close())
  const first = await runCycle(deps)
  t.is(first.migrated, 2, first.error)
  const shard = first.shardKeys[0]
  const size = (await client.send(new GetObjectCommand({ Bucket: bucket, Key: shard }))).ContentLength!
  await tb.insert([
    { uid: 'slash', createdAt: rows[0].createdAt, location: `s3://${bucket}//${shard}`, size },
    { uid: 'dots', createdAt: rows[0].createdAt, location: `s3://${bucket}/x/../${shard}`, size },
  ])
  const report = await runCycle(deps)
  t.is(report.migrated, 0)
  t.deepEqual(report.bad.map((b) => [b.uid, /a file of the store being written/.test(b.reason)]).sort(), [
    ['dots', true],
    ['slash', true],
  ])
  t.true(await exists(client, bucket, shard), 'the shard was not deleted')
  await checkAll(t, new S3Source(client, { bucket, prefix: 'archive/' }), rows)
})

test('an s3:// source whose key the server refuses (MinIO: a//b) is a bad row; the rest of the batch migrates', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'mig-refused')
  const tb = await freshTable('s3_refused')
  t.teardown(() => tb.close())
  const [good] = makeFiles(tb.dir, 1)
  await tb.insert([good, { uid: 'refused', createdAt: good.createdAt, location: `s3://${bucket}/in//x`, size: 1 }])
  const doc = s3Config(tb, bucket) as { packer: { s3: Record<string, unknown> } }
  doc.packer.s3.endpoint_url = s3TestEnv().endpoint
  const deps = createDeps(parseMigrateConfig(doc))
  t.teardown(() => deps.close())
  const report = await runCycle(deps)
  t.is(report.status, 'success', report.error)
  t.is(report.migrated, 1)
  t.deepEqual(
    report.bad.map((b) => [b.uid, /refused by S3 \(HTTP 400\)/.test(b.reason)]),
    [['refused', true]],
  )
  await checkAll(t, new S3Source(client, { bucket, prefix: 'archive/' }), [good])
})

test('an S3 source overwritten after it was checked and read is not deleted: its new bytes are stored nowhere', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'mig-overwrite')
  const names = ['same', 'resized', 'rewritten', 'no-etag']
  for (const n of names) await client.send(new PutObjectCommand({ Bucket: bucket, Key: `in/${n}`, Body: 'read' }))
  const sources = names.map((n) => parseLocation(`s3://${bucket}/in/${n}`)!)
  // Step 2's check, as the cycle makes it: the size, and the ETag it had.
  const checks = await checkLocations(sources, client)
  const rows = names.map((uid, i) => {
    const check = checks[i]
    if (!check.ok) throw new Error(check.reason)
    const etag = uid === 'no-etag' || check.etag === undefined ? {} : { etag: check.etag }
    return { ctid: `(0,${i + 1})`, tableoid: '1', uid, createdAt: '2024-01-01T00:00:00Z', size: check.size, location: `s3://${bucket}/in/${uid}`, source: sources[i], dateDir: '20240101', shardHex: '0', shardIndex: 0, ...etag }
  })
  t.truthy(rows[0].etag, 'MinIO gives an ETag')
  // Another writer, after the pack read them: one grows, one is rewritten with as many bytes.
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/resized', Body: 'new bytes' }))
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/rewritten', Body: 'newb' }))
  const table = { locationsStillNamed: async () => new Set<string>() }
  const r = await deleteSources({ table, sourceS3: client } as unknown as CycleDeps, rows, Date.now())
  t.is(r.deleted, 1)
  t.false(await exists(client, bucket, 'in/same'))
  const reasons = Object.fromEntries(r.errors.map((e) => [e.uid, e.reason]))
  t.deepEqual(Object.keys(reasons).sort(), ['no-etag', 'resized', 'rewritten'])
  t.regex(reasons.resized, /not deleted: it is now 9 bytes, 4 were stored/)
  t.regex(reasons.rewritten, /not deleted: it was overwritten after it was read \(ETag "[0-9a-f]+", was "[0-9a-f]+"\)/)
  t.regex(reasons['no-etag'], /not deleted: S3 gave no ETag to tell whether it was overwritten/)
  for (const n of ['resized', 'rewritten', 'no-etag']) t.true(await exists(client, bucket, `in/${n}`), `${n} is kept`)
})

test('an S3 source overwritten between its check and its read is set aside, not stored: the packer reads the version step 2 checked, or none', async (t) => {
  const client = testS3Client()
  const srcBucket = await freshBucket(client, 'mig-between')
  const tb = await freshTable('s3_between')
  t.teardown(() => tb.close())
  const env = s3TestEnv()
  const doc = baseConfig(tb) as { packer: Record<string, unknown> }
  doc.packer.s3_source = { enabled: true, region_name: env.region, endpoint_url: env.endpoint }
  const deps = createDeps(parseMigrateConfig(doc))
  t.teardown(() => deps.close())
  const names = ['kept', 'rewritten', 'deleted']
  for (const n of names) await client.send(new PutObjectCommand({ Bucket: srcBucket, Key: `in/${n}`, Body: 'read' }))
  // Step 2's check, as the cycle makes it: the size, and the ETag it had.
  const sources = names.map((n) => parseLocation(`s3://${srcBucket}/in/${n}`)!)
  const checks = await checkLocations(sources, client)
  const createdAt = '2024-01-01T00:00:00Z'
  const rows: GoodRow[] = names.map((uid, i) => {
    const check = checks[i]
    if (!check.ok || check.etag === undefined) throw new Error(`${uid}: no size and ETag from the check`)
    const loc = locateShard(uid, createdAt, deps.config.packer.nBits)
    return { ctid: `(0,${i + 1})`, tableoid: '1', uid, createdAt, size: check.size, location: `s3://${srcBucket}/in/${uid}`, source: sources[i], dateDir: loc.dateDir, shardHex: loc.shardHex, shardIndex: loc.shardIndex, etag: check.etag }
  })
  // Another writer, between the check and the pack's read: as many bytes, other ones.
  await client.send(new PutObjectCommand({ Bucket: srcBucket, Key: 'in/rewritten', Body: 'newb' }))
  // And one removed meanwhile: that row's failure, not the cycle's.
  await client.send(new DeleteObjectCommand({ Bucket: srcBucket, Key: 'in/deleted' }))
  const r = await packPast(deps, rows)
  t.deepEqual(r.packedRows.map((row) => row.uid), ['kept'])
  const reasons = Object.fromEntries(r.bad.map((b) => [b.uid, b.reason]))
  t.deepEqual(Object.keys(reasons).sort(), ['deleted', 'rewritten'])
  t.regex(reasons.rewritten, /was overwritten after it was checked \(its ETag is no longer "[0-9a-f]+"\)/)
  t.regex(reasons.deleted, /does not exist/)
  const store = new LocalSource(String(doc.packer.output_dir))
  t.is((await readBack(store, 'kept', createdAt, deps.config.packer.nBits)).data?.toString(), 'read')
  t.is((await readBack(store, 'rewritten', createdAt, deps.config.packer.nBits)).copies, 0, 'the new bytes are stored nowhere')
  // The same through a plan spilled to temp files (a batch past DES_PACK_MEMORY_ENTRIES): the ETag goes with it.
  const spilled = runPack([{ uid: 'rewritten', createdAt, source: rows[1].location, sizeBytes: 4, etag: rows[1].etag }], { kind: 'local', dir: tempDir() }, { sourceS3: { client } }, { memoryEntries: 0 })
  const err = await t.throwsAsync(spilled)
  t.is(errorCode(err), 'DES_SOURCE_CHANGED', err?.message)
})
