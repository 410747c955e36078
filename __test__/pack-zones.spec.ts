// Zones on the write side (DES_BACKEND=multi_s3): `des pack` puts each shard,
// and its BigFiles, in the zone that serves its shard index, against the real
// MinIO: two buckets, and two prefixes in one bucket. A key in no zone is
// refused before anything is written.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { locateShard } from '../src/native'
import { loadZones } from '../src/config/zones'
import { zonedS3Sources } from '../src/storage/zones'
import { Store } from '../src/store/store'
import { runCli } from './helpers/cli'
import { asInputs, content, countCalls, listKeys, makeCorpus, readS3Store, recordCommands, sha256, tempDir, uidsByKey } from './helpers/pack'
import { packFiles } from '../src/pack'
import { LIST_FROM_KEYS } from '../src/pack/s3-target'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'

const N_BITS = 4
const DAY = '2024-05-01T10:00:00Z'
const BIG = 100_000

/** Env of a CLI run on the zones file, nothing else inherited that could route or place keys. */
function zonesEnv(zones: string): NodeJS.ProcessEnv {
  return { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones, DES_BASE_DIR: '', DES_LAYOUT: '', DES_N_BITS: '', DES_S3_BUCKET: '', DES_S3_PREFIX: '', DES_BIG_FILE_THRESHOLD_BYTES: String(BIG) }
}

interface ZoneSpec {
  name: string
  start: number
  end: number
  bucket: string
  prefix: string
}

function writeZones(dir: string, zones: ZoneSpec[]): string {
  const { endpoint } = s3TestEnv()
  const file = path.join(dir, 'zones.yaml')
  const lines = [`n_bits: ${N_BITS}`, 'zones:']
  for (const z of zones) {
    lines.push(`  - {name: ${z.name}, range: {start: ${z.start}, end: ${z.end}}, s3: {bucket: ${z.bucket}, prefix: "${z.prefix}", region_name: us-east-1, endpoint_url: "${endpoint}"}}`)
  }
  fs.writeFileSync(file, lines.join('\n') + '\n')
  return file
}

test('des pack with DES_BACKEND=multi_s3 writes every shard and BigFile to the zone of its shard index, and only there', async (t) => {
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'des-pz-a'), await freshBucket(client, 'des-pz-b')]
  const dir = tempDir()
  // Two prefixes in bucket a, bucket b whole.
  const zones: ZoneSpec[] = [
    { name: 'low', start: 0, end: 5, bucket: a, prefix: 'p1/' },
    { name: 'mid', start: 6, end: 9, bucket: a, prefix: 'p2/' },
    { name: 'high', start: 10, end: 15, bucket: b, prefix: '' },
  ]
  const zonesFile = writeZones(dir, zones)
  const specs: Array<{ uid: string; createdAt: string; kind?: 'random'; size: number }> = []
  for (let i = 0; i < 48; i++) specs.push({ uid: String(i), createdAt: DAY, size: 500 + 37 * i })
  // A BigFile in shard 2 (zone low) and one in shard 12 (zone high).
  specs.push({ uid: String(16 * 5 + 2), createdAt: DAY, kind: 'random', size: BIG + 5000 })
  specs.push({ uid: String(16 * 5 + 12), createdAt: DAY, kind: 'random', size: BIG + 7000 })
  const corpus = makeCorpus(path.join(dir, 'src'), specs)

  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--json'], { env: zonesEnv(zonesFile) })
  t.is(r.code, 0, r.stderr)
  const summary = JSON.parse(r.stdout.toString())
  t.is(summary.files, specs.length)
  t.regex(summary.target, /zones of .*zones\.yaml/)

  const zoneOf = (index: number) => zones.find((z) => z.start <= index && index <= z.end)!
  // What each zone should hold: its shards, and the BigFiles of its shards.
  const expected = new Map<string, string[]>(zones.map((z) => [z.name, []]))
  for (const s of specs) {
    const loc = locateShard(s.uid, s.createdAt, N_BITS)
    const z = zoneOf(loc.shardIndex)
    const keys = expected.get(z.name)!
    keys.push(`${z.prefix}${loc.objectKey}`)
    if (s.size > BIG) keys.push(`${z.prefix}${loc.dateDir}/_bigFiles/${corpus.shas.get(s.uid)}`)
  }
  const listed = new Map<string, string[]>()
  for (const z of zones) listed.set(z.name, await listKeys(client, z.bucket, z.prefix))
  for (const z of zones) t.deepEqual(listed.get(z.name), [...new Set(expected.get(z.name))].sort(), z.name)
  // Nothing outside the zones' prefixes.
  t.deepEqual((await listKeys(client, a)).filter((k) => !k.startsWith('p1/') && !k.startsWith('p2/')), [])
  t.true(listed.get('low')!.some((k) => k.includes('/_bigFiles/')))
  t.true(listed.get('high')!.some((k) => k.includes('/_bigFiles/')))

  // Read back through the zoned sources, every file byte-exact.
  const loaded = loadZones(zonesFile)
  const store = new Store({ sources: zonedS3Sources(loaded), nBits: loaded.nBits })
  for (const row of corpus.rows) {
    const data = await store.get(row.uid, row.created_at)
    t.is(sha256(data), corpus.shas.get(row.uid), row.uid)
  }

  const v = await runCli(['verify', '--store', '--json'], { env: zonesEnv(zonesFile) })
  t.is(v.code, 0, v.stderr + v.stdout.toString().slice(-2000))

  // A rerun with --skip-existing finds every file in its zone: nothing added.
  const again = await runCli(['pack', '--input-json', corpus.manifestPath, '--skip-existing', '--json'], { env: zonesEnv(zonesFile) })
  t.is(again.code, 0, again.stderr)
  t.like(JSON.parse(again.stdout.toString()), { files: 0, skipped: specs.length })
})

test('des pack refuses a manifest with a key in no zone before writing anything (exit 2, naming the uid and index)', async (t) => {
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'des-pz-c'), await freshBucket(client, 'des-pz-d')]
  const dir = tempDir()
  // Indexes 8..11 are in no zone.
  const zonesFile = writeZones(dir, [
    { name: 'a', start: 0, end: 7, bucket: a, prefix: '' },
    { name: 'b', start: 12, end: 15, bucket: b, prefix: '' },
  ])
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: '1', createdAt: DAY, size: 100 },
    { uid: '13', createdAt: DAY, size: 100 },
    { uid: '9', createdAt: DAY, size: 100 },
  ])
  const r = await runCli(['pack', '--input-json', corpus.manifestPath], { env: zonesEnv(zonesFile) })
  t.is(r.code, 2, r.stderr)
  t.regex(r.stderr, /uid "9" \(line \d+, entry 3\) routes to shard index 9 .*no zone.*uncovered: 8\.\.11.*nothing was written/)
  // A dry run says the same.
  const dry = await runCli(['pack', '--input-json', corpus.manifestPath, '--dry-run'], { env: zonesEnv(zonesFile) })
  t.is(dry.code, 2, dry.stderr)
  t.regex(dry.stderr, /uid "9" .* no zone/)
  // Split between workers (index 9 is worker 0's, 1 and 13 worker 1's, none
  // worker 2's): every worker refuses, so no worker stores its part alone.
  for (const worker of ['0/3', '1/3', '2/3']) {
    const w = await runCli(['pack', '--input-json', corpus.manifestPath, '--worker', worker], { env: zonesEnv(zonesFile) })
    t.is(w.code, 2, `worker ${worker}: ${w.stderr}`)
    t.regex(w.stderr, /uid "9" \(line \d+, entry 3\) routes to shard index 9 .*no zone/, worker)
  }
  t.deepEqual(await listKeys(client, a), [])
  t.deepEqual(await listKeys(client, b), [])
})

test('des pack with zones routes with the zones file\'s n_bits: --n-bits or DES_N_BITS set to another is refused naming both, one left at its default is not', async (t) => {
  const client = testS3Client()
  const a = await freshBucket(client, 'des-pz-e')
  const dir = tempDir()
  const zonesFile = writeZones(dir, [{ name: 'a', start: 0, end: 15, bucket: a, prefix: '' }])
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: '1', createdAt: DAY, size: content('text', 10).length }])
  const pack = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(['pack', '--input-json', corpus.manifestPath, ...args], { env: { ...zonesEnv(zonesFile), ...env } })
  const byFlag = await pack(['--n-bits', '8'])
  t.is(byFlag.code, 2, byFlag.stderr)
  t.regex(byFlag.stderr, /zones file .*zones\.yaml: it routes with n_bits 4, while --n-bits sets n_bits 8/)
  // DES_N_BITS is as explicit as the flag: not silently overridden by the zones file.
  const byVar = await pack(['--dry-run'], { DES_N_BITS: '8' })
  t.is(byVar.code, 2, byVar.stderr)
  t.regex(byVar.stderr, /zones file .*zones\.yaml: it routes with n_bits 4, while DES_N_BITS sets n_bits 8/)
  const flagOverVar = await pack(['--dry-run', '--n-bits', '6'], { DES_N_BITS: '4' })
  t.is(flagOverVar.code, 2, flagOverVar.stderr)
  t.regex(flagOverVar.stderr, /n_bits 4, while --n-bits sets n_bits 6/)
  t.deepEqual(await listKeys(client, a), [])
  // Left at its default (8), or set alike: the zones file decides, no conflict.
  for (const env of [{}, { DES_N_BITS: '4' }]) {
    const dry = await pack(['--dry-run', '--json'], env)
    t.is(dry.code, 0, dry.stderr)
    t.deepEqual(JSON.parse(dry.stdout.toString()).keys.map((k: { key: string }) => k.key), [locateShard('1', DAY, N_BITS).objectKey])
  }
  const agreeing = await pack(['--n-bits', '4'])
  t.is(agreeing.code, 0, agreeing.stderr)
  t.deepEqual(await listKeys(client, a), [locateShard('1', DAY, N_BITS).objectKey])
})

test('each zone lists its own keys of a date once (packFiles over two buckets), and every file lands in its zone', async (t) => {
  const { client, calls } = recordCommands(testS3Client())
  const [a, b] = [await freshBucket(client, 'des-pz-list-a'), await freshBucket(client, 'des-pz-list-b')]
  const dir = tempDir()
  // Enough keys on each side of index 128 for both zones to list.
  const keys = uidsByKey(4 * LIST_FROM_KEYS, 1, DAY, 'z').flat()
  const low = keys.filter((uid) => locateShard(uid, DAY, 8).shardIndex < 128).slice(0, LIST_FROM_KEYS)
  const high = keys.filter((uid) => locateShard(uid, DAY, 8).shardIndex >= 128).slice(0, LIST_FROM_KEYS)
  t.is(low.length + high.length, 2 * LIST_FROM_KEYS)
  const corpus = makeCorpus(path.join(dir, 'src'), [...low, ...high].map((uid) => ({ uid, createdAt: DAY, size: 300 })))
  const zones = [
    { name: 'low', start: 0, end: 127, bucket: a, prefix: 'z/', client },
    { name: 'high', start: 128, end: 255, bucket: b, prefix: '', client },
  ]
  await packFiles(asInputs(corpus.rows), { kind: 'zones', nBits: 8, zones }, {})
  t.is(countCalls(calls, 'ListObjectsV2Command'), 2, 'one listing per zone')
  t.is(countCalls(calls, 'GetObjectCommand', 404), 0, 'no missing key asked for')
  const stored = [...(await readS3Store(client, a, 'z/')), ...(await readS3Store(client, b))]
  t.deepEqual(stored.map(([uid]) => uid).sort(), [...low, ...high].sort())
  const lowStored = new Set((await readS3Store(client, a, 'z/')).keys())
  for (const uid of low) t.true(lowStored.has(uid), `${uid} in the low zone`)
  for (const [uid, file] of stored) t.is(file.sha256, corpus.shas.get(uid)!, uid)
})

test('a region the S3 client cannot take (a zone\'s region_name, DES_S3_REGION) is refused at start-up as a setting (exit 2, naming it), not met as a store that does not answer', async (t) => {
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'des-pz-r'), await freshBucket(client, 'des-pz-s')]
  const dir = tempDir()
  const { endpoint } = s3TestEnv()
  const zonesFile = path.join(dir, 'zones.yaml')
  fs.writeFileSync(
    zonesFile,
    ['n_bits: 4', 'zones:', `  - {name: a, range: {start: 0, end: 7}, s3: {bucket: ${a}, region_name: us-east-1, endpoint_url: "${endpoint}"}}`, `  - {name: b, range: {start: 8, end: 15}, s3: {bucket: ${b}, region_name: "bad region!", endpoint_url: "${endpoint}"}}`].join('\n'),
  )
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: '1', createdAt: DAY, size: 10 }])
  const zoned = await runCli(['pack', '--input-json', corpus.manifestPath], { env: zonesEnv(zonesFile) })
  t.is(zoned.code, 2, zoned.stderr)
  t.regex(zoned.stderr, /zones file .*zones\.yaml: zone b: s3\.region_name "bad region!": expected a region name/)
  const verify = await runCli(['verify', '--store'], { env: zonesEnv(zonesFile) })
  t.is(verify.code, 2, verify.stderr)
  const bucket = await runCli(['pack', '--input-json', corpus.manifestPath, '--s3-bucket', a], { env: { DES_S3_ENDPOINT_URL: endpoint, DES_S3_REGION: 'bad region!' } })
  t.is(bucket.code, 2, bucket.stderr)
  t.regex(bucket.stderr, /DES_S3_REGION="bad region!" is invalid: expected a region name/)
  t.deepEqual([...(await listKeys(client, a)), ...(await listKeys(client, b))], [], 'nothing written')
})
