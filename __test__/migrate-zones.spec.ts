// `des migrate` with DES_BACKEND=multi_s3: the zones of DES_ZONES_CONFIG take
// the place of packer.output_dir / packer.s3; each row lands in the zone of
// its shard index (BigFiles beside their shard), is read back from there
// before its row is archived, and `des verify --store` finds the zones clean.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import { locateShard } from '../src/native'
import { loadZones } from '../src/config/zones'
import { zonedS3Sources } from '../src/storage/zones'
import { Store } from '../src/store/store'
import { runCli } from './helpers/cli'
import { baseConfig, freshTable, makeFiles, writeConfig } from './helpers/migrate'
import { listKeys, sha256 } from './helpers/pack'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'

const BIG = 100_000

test('des migrate with DES_BACKEND=multi_s3 writes each row to the zone of its shard index; read back, archived, verify --store clean', async (t) => {
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'des-mz-a'), await freshBucket(client, 'des-mz-b')]
  const tb = await freshTable('zones')
  t.teardown(() => tb.close())
  const { endpoint } = s3TestEnv()
  const zones = [
    { name: 'low', start: 0, end: 6, bucket: a, prefix: 'z1/' },
    { name: 'mid', start: 7, end: 10, bucket: a, prefix: 'z2/' },
    { name: 'high', start: 11, end: 15, bucket: b, prefix: '' },
  ]
  const zonesFile = path.join(tb.dir, 'zones.yaml')
  fs.writeFileSync(
    zonesFile,
    ['n_bits: 4', 'zones:', ...zones.map((z) => `  - {name: ${z.name}, range: {start: ${z.start}, end: ${z.end}}, s3: {bucket: ${z.bucket}, prefix: "${z.prefix}", endpoint_url: "${endpoint}"}}`)].join('\n'),
  )
  const rows = makeFiles(tb.dir, 40)
  // Two BigFiles.
  for (const uid of ['big-1', 'big-2']) {
    const data = randomBytes(BIG + 1234)
    const location = path.join(tb.dir, 'src', uid)
    fs.writeFileSync(location, data)
    rows.push({ uid, createdAt: '2024-01-09T08:00:00.000Z', location, size: data.length, data })
  }
  await tb.insert(rows)
  const cfg = writeConfig(tb.dir, baseConfig(tb, { packer: { big_file_threshold: BIG } }), 'yaml')
  const env = { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zonesFile, DES_N_BITS: '', DES_LAYOUT: '', DES_BASE_DIR: '' }

  const r = await runCli(['migrate', '--config', cfg, '--json'], { env })
  t.is(r.code, 0, r.stderr)
  t.regex(r.stderr, /writing to the 3 zones of .*zones\.yaml/)
  const report = JSON.parse(r.stdout.toString())
  t.is(report.migrated, rows.length)
  t.deepEqual(report.bad, [])
  t.false(fs.existsSync(path.join(tb.dir, 'out')), 'packer.output_dir is not written')
  t.true([...(await tb.archived()).values()].every(Boolean))

  // Every shard and BigFile in the zone of its index, nothing anywhere else.
  const zoneOf = (index: number) => zones.find((z) => z.start <= index && index <= z.end)!
  const expected = new Map<string, Set<string>>(zones.map((z) => [z.name, new Set()]))
  for (const row of rows) {
    const loc = locateShard(row.uid, row.createdAt!, 4)
    const z = zoneOf(loc.shardIndex)
    expected.get(z.name)!.add(`${z.prefix}${loc.objectKey}`)
    if (row.size! > BIG) expected.get(z.name)!.add(`${z.prefix}${loc.dateDir}/_bigFiles/${sha256(row.data!)}`)
  }
  for (const z of zones) t.deepEqual(await listKeys(client, z.bucket, z.prefix), [...expected.get(z.name)!].sort(), z.name)
  t.deepEqual((await listKeys(client, a)).filter((k) => !k.startsWith('z1/') && !k.startsWith('z2/')), [])
  t.true([...expected.values()].filter((keys) => [...keys].some((k) => k.includes('/_bigFiles/'))).length >= 1)

  const loaded = loadZones(zonesFile)
  const store = new Store({ sources: zonedS3Sources(loaded), nBits: loaded.nBits })
  for (const row of rows) t.true((await store.get(row.uid, row.createdAt!)).equals(row.data!), row.uid)

  const v = await runCli(['verify', '--store', '--json'], { env })
  t.is(v.code, 0, v.stderr + v.stdout.toString().slice(-2000))

  // A second cycle finds nothing left to do.
  const again = await runCli(['migrate', '--config', cfg, '--json'], { env })
  t.is(again.code, 0, again.stderr)
  t.is(JSON.parse(again.stdout.toString()).migrated, 0)

  // A row naming one of a zone's own shards is a bad row: archiving it would delete that shard.
  const someShard = [...expected.get('high')!].find((k) => k.endsWith('.des'))!
  await tb.insert([{ uid: 'self', createdAt: rows[0].createdAt, location: `s3://${b}/${someShard}`, size: 10 }])
  const third = await runCli(['migrate', '--config', cfg, '--json'], { env })
  const bad = JSON.parse(third.stdout.toString()).bad as Array<{ uid: string; reason: string }>
  t.deepEqual(bad.map((x) => x.uid), ['self'])
  t.regex(bad[0].reason, /a file of the store being written/)
  t.true((await listKeys(client, b)).includes(someShard))
})

test('des migrate routes with the zones file\'s n_bits: packer.n_bits or DES_N_BITS set to another is refused naming both, one left at its default is not', async (t) => {
  const client = testS3Client()
  const a = await freshBucket(client, 'des-mz-c')
  const tb = await freshTable('zones-bits')
  t.teardown(() => tb.close())
  const zonesFile = path.join(tb.dir, 'zones.yaml')
  fs.writeFileSync(zonesFile, `n_bits: 6\nzones:\n  - {name: all, range: {start: 0, end: 63}, s3: {bucket: ${a}, endpoint_url: "${s3TestEnv().endpoint}"}}\n`)
  const rows = makeFiles(tb.dir, 3)
  await tb.insert(rows)
  const env = { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zonesFile, DES_N_BITS: '' }
  // packer.n_bits 4 (baseConfig's) in the config file.
  const cfg = writeConfig(tb.dir, baseConfig(tb), 'yaml')
  const r = await runCli(['migrate', '--config', cfg], { env })
  t.is(r.code, 2, r.stderr)
  t.regex(r.stderr, /zones file .*zones\.yaml: it routes with n_bits 6, while packer\.n_bits of .*migrate\.yaml sets n_bits 4/)
  // No packer.n_bits: DES_N_BITS set to another is refused too, not silently overridden.
  const noKey = writeConfig(tb.dir, baseConfig(tb, { packer: { n_bits: undefined } }), 'json', 'no-n-bits')
  t.false(fs.readFileSync(noKey, 'utf8').includes('n_bits'))
  const byVar = await runCli(['migrate', '--config', noKey, '--dry-run'], { env: { ...env, DES_N_BITS: '8' } })
  t.is(byVar.code, 2, byVar.stderr)
  t.regex(byVar.stderr, /zones file .*zones\.yaml: it routes with n_bits 6, while DES_N_BITS sets n_bits 8/)
  t.deepEqual(await listKeys(client, a), [])
  // Neither set (n_bits left at its default 8), or set alike: the zones file decides.
  for (const vars of [{}, { DES_N_BITS: '6' }]) {
    const dry = await runCli(['migrate', '--config', noKey, '--dry-run', '--json'], { env: { ...env, ...vars } })
    t.is(dry.code, 0, dry.stderr)
    const report = JSON.parse(dry.stdout.toString())
    t.is(report.migrated, rows.length)
    t.deepEqual(report.shard_keys.sort(), [...new Set(rows.map((row) => locateShard(row.uid, row.createdAt!, 6).objectKey))].sort())
  }
  t.deepEqual(await listKeys(client, a), [])
})

test('des migrate with a row in a shard index no zone serves: the cycle fails before writing anything (exit 2), no row archived', async (t) => {
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'des-mz-d'), await freshBucket(client, 'des-mz-e')]
  const tb = await freshTable('zones-gap')
  t.teardown(() => tb.close())
  const { endpoint } = s3TestEnv()
  const rows = makeFiles(tb.dir, 12)
  const indexes = rows.map((r) => locateShard(r.uid, r.createdAt, 4).shardIndex)
  // The index of the last row is in no zone; every other index is.
  const gap = indexes[indexes.length - 1]
  const covered = (lo: number, hi: number) => (lo <= hi ? [{ lo, hi }] : [])
  const ranges = [...covered(0, gap - 1), ...covered(gap + 1, 15)]
  const buckets = [a, b]
  const zonesFile = path.join(tb.dir, 'zones.yaml')
  fs.writeFileSync(
    zonesFile,
    ['n_bits: 4', 'zones:', ...ranges.map((r, i) => `  - {name: z${i}, range: {start: ${r.lo}, end: ${r.hi}}, s3: {bucket: ${buckets[i]}, endpoint_url: "${endpoint}"}}`)].join('\n'),
  )
  await tb.insert(rows)
  const cfg = writeConfig(tb.dir, baseConfig(tb), 'yaml')
  const r = await runCli(['migrate', '--config', cfg, '--json'], { env: { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zonesFile, DES_N_BITS: '' } })
  t.is(r.code, 2, r.stderr)
  const report = JSON.parse(r.stdout.toString())
  t.is(report.status, 'error')
  t.is(report.error_code, 'DES_CONFIG')
  t.regex(report.error, new RegExp(`uid "f\\d+" \\(.*\\) routes to shard index ${gap} .*no zone.*nothing was written`))
  t.is(report.migrated, 0)
  for (const bucket of buckets) t.deepEqual(await listKeys(client, bucket), [])
  t.false([...(await tb.archived()).values()].some(Boolean))
})
