// des pack and packFiles in the reference's flat layout (DES_LAYOUT=flat): a
// store the original packer wrote (golden/flat-store) topped up without
// rewriting any of its shards, new files dated as written, BigFiles at the
// root, and one des serve answering for old and new files alike; on local
// disk (the CLI) and on MinIO.

import test from 'ava'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { packFiles } from '../src/pack'
import { S3Source } from '../src/storage/s3'
import { singleSource } from '../src/storage/source'
import { Store } from '../src/store/store'
import { referenceDigits } from '../src/store/layout'
import { LocalSource } from '../src/storage/local'
import { locateShard, ShardWriter } from '../src/native'
import { runCli } from './helpers/cli'
import { goldenPath, readJson } from './helpers/golden'
import { freshBucket, testS3Client } from './helpers/services'
import { startServe } from './helpers/serve-process'
import { payload, tempDir, uploadDir } from './helpers/store'

interface Expect {
  n_bits: number
  files: Array<{ uid: string; created_at: string; size: number; sha256: string }>
}
const golden = readJson<Expect>(goldenPath('flat-store', 'expect.json'))
const sha = (b: Buffer | ArrayBuffer) => createHash('sha256').update(Buffer.from(b as ArrayBuffer)).digest('hex')

/** New files for the store: one with an offset that crosses midnight, one BigFile, the rest plain. */
function newFiles(dir: string): Array<{ uid: string; created_at: string; data: Buffer; source_path: string; size_bytes: number }> {
  const made = [
    { uid: 'new-late', created_at: '2024-03-01T23:30:00-05:00', data: payload(1500, 1) },
    { uid: 'new-2', created_at: '2024-03-02T10:00:00Z', data: payload(2500, 2) },
    { uid: '4242', created_at: '2024-03-01T10:00:00Z', data: payload(4000, 3) },
    { uid: 'new-big', created_at: '2024-03-03T08:00:00+02:00', data: payload(250_000, 4) },
  ]
  fs.mkdirSync(dir, { recursive: true })
  return made.map((f) => {
    const source_path = path.join(dir, f.uid)
    fs.writeFileSync(source_path, f.data)
    return { ...f, source_path, size_bytes: f.data.length }
  })
}

test('des pack as the original\'s des-pack ran it (no layout named) does not put nested shards into its flat store: refused (exit 2) until a layout is set', async (t) => {
  const store = tempDir('des-pack-flat-unset-')
  fs.cpSync(goldenPath('flat-store'), store, { recursive: true })
  const files = newFiles(path.join(tempDir('des-pack-flat-unset-src-'), 'src'))
  const manifest = path.join(store, '..', `manifest-${path.basename(store)}.json`)
  fs.writeFileSync(manifest, JSON.stringify(files.map(({ data: _data, ...f }) => f)))
  const env = { DES_LAYOUT: '', DES_N_BITS: String(golden.n_bits) }
  const listing = () => fs.readdirSync(store).sort()
  const before = listing()
  for (const dryRun of [[], ['--dry-run']]) {
    const r = await runCli(['pack', '--input-json', manifest, '--output-dir', store, ...dryRun], { env })
    t.is(r.code, 2, r.stderr)
    t.regex(r.stderr, /the store holds shards of the original's flat layout \(\d{8}_[0-9A-F]+_\d{4}\.des\), and no layout is set.*set --layout \(or DES_LAYOUT\) to flat/)
  }
  t.deepEqual(listing(), before, 'nothing written')
  // Either layout named on purpose is written: DES_LAYOUT=flat, or --layout nested.
  t.is((await runCli(['pack', '--input-json', manifest, '--output-dir', store, '--dry-run'], { env: { ...env, DES_LAYOUT: 'flat' } })).code, 0)
  const nested = await runCli(['pack', '--input-json', manifest, '--output-dir', store, '--layout', 'nested'], { env })
  t.is(nested.code, 0, nested.stderr)
  t.true(fs.existsSync(path.join(store, '20240302')), 'nested, as asked')
})

test('des pack with DES_LAYOUT=flat tops up the reference\'s store without rewriting a shard, and one des serve returns old and new files', async (t) => {
  const store = tempDir('des-pack-flat-')
  fs.cpSync(goldenPath('flat-store'), store, { recursive: true })
  const before = new Map(fs.readdirSync(store).filter((n) => n.endsWith('.des')).map((n) => [n, sha(fs.readFileSync(path.join(store, n)))]))
  const files = newFiles(path.join(tempDir('des-pack-flat-src-'), 'src'))
  const manifest = path.join(store, '..', `manifest-${path.basename(store)}.json`)
  fs.writeFileSync(manifest, JSON.stringify(files.map(({ data: _data, ...f }) => f)))
  const env = { DES_LAYOUT: 'flat', DES_N_BITS: String(golden.n_bits), DES_BIG_FILE_THRESHOLD_BYTES: '200000' }
  const r = await runCli(['pack', '--input-json', manifest, '--output-dir', store, '--json'], { env })
  t.is(r.code, 0, r.stderr)
  const keys: string[] = JSON.parse(r.stdout.toString()).keys.map((k: { key: string }) => k.key)
  t.true(keys.every((k) => /^\d{8}_[0-9A-F]_\d{4}\.des$/.test(k)), keys.join(' '))
  // The late file is under the date it was written with, not its UTC date.
  t.true(keys.some((k) => k.startsWith('20240301_')) && !fs.existsSync(path.join(store, '20240302')), 'no nested folder')
  // Every shard the reference wrote is untouched; new ones follow the last _NNNN of their key.
  for (const [name, digest] of before) t.is(sha(fs.readFileSync(path.join(store, name))), digest, name)
  for (const k of keys) t.false(before.has(k), `${k} is a new shard`)
  t.true(fs.existsSync(path.join(store, '_bigFiles', sha(files[3].data))), 'the BigFile is in _bigFiles/ at the root')

  // A second run for a key adds the next _NNNN; --replace is refused in this layout.
  const more = path.join(path.dirname(files[0].source_path), 'more')
  fs.writeFileSync(more, payload(700, 9))
  fs.writeFileSync(manifest, JSON.stringify([{ uid: 'new-late-2', created_at: '2024-03-01T23:45:00-05:00', size_bytes: 700, source_path: more }]))
  const again = await runCli(['pack', '--input-json', manifest, '--output-dir', store, '--json'], { env })
  t.is(again.code, 0, again.stderr)
  const added = JSON.parse(again.stdout.toString()).keys[0].key as string
  t.true(fs.existsSync(path.join(store, added)))
  const replace = await runCli(['pack', '--input-json', manifest, '--output-dir', store, '--replace'], { env })
  t.is(replace.code, 2)
  t.regex(replace.stderr, /flat layout never rewrites a shard/)

  const srv = await startServe(['--workers', '1', '--base-dir', store], env)
  try {
    for (const f of golden.files) {
      const res = await fetch(`${srv.url}/files/${encodeURIComponent(f.uid)}?created_at=${encodeURIComponent(f.created_at)}`)
      t.is(res.status, 200, f.uid)
      t.is(sha(await res.arrayBuffer()), f.sha256, f.uid)
    }
    for (const f of files) {
      const res = await fetch(`${srv.url}/files/${encodeURIComponent(f.uid)}?created_at=${encodeURIComponent(f.created_at)}`)
      t.is(res.status, 200, f.uid)
      t.is(sha(await res.arrayBuffer()), sha(f.data), f.uid)
    }
    const late2 = await fetch(`${srv.url}/files/new-late-2?created_at=${encodeURIComponent('2024-03-01T23:45:00-05:00')}`)
    t.is(late2.status, 200)
  } finally {
    t.is(await srv.stop(), 0)
  }
})

test('S3 (MinIO): packFiles in the flat layout tops up the reference\'s store in a bucket; a flat store reads old and new', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-pack-flat')
  const prefix = 'legacy/'
  await uploadDir(client, bucket, goldenPath('flat-store'), prefix, (k) => k !== 'expect.json')
  const files = newFiles(path.join(tempDir('des-pack-flat-s3-'), 'src'))
  const res = await packFiles(
    files.map((f) => ({ uid: f.uid, createdAt: f.created_at, sizeBytes: f.size_bytes, source: f.source_path })),
    { kind: 's3', bucket, prefix, client },
    { layout: 'flat', nBits: golden.n_bits, bigFileThreshold: 200_000 },
  )
  t.true(res.shards.every((s) => /^legacy\/\d{8}_[0-9A-F]_\d{4}\.des$/.test(s.key)), res.shards.map((s) => s.key).join(' '))
  const store = new Store({ sources: singleSource(new S3Source(client, { bucket, prefix }, 's3')), nBits: golden.n_bits, layout: 'flat' })
  for (const f of golden.files) t.is(sha(await store.get(f.uid, f.created_at)), f.sha256, f.uid)
  for (const f of files) t.is(sha(await store.get(f.uid, f.created_at)), sha(f.data), f.uid)
  t.is((await store.find('new-big', files[3].created_at)).entry.isBigfile, true)
})

test("a uid of other decimal digits in a flat shard of the original's is found where it put it (its int(), ours the CRC), and verify --store does not call it misplaced", async (t) => {
  const dir = tempDir('des-flat-digits')
  const at = '2024-03-01T09:17:12Z'
  // ٤٥٦ is 456 to the original: shard 456 mod 256 = C8. Our routing takes the CRC (another shard).
  const uid = '\u0664\u0665\u0666'
  const ours = locateShard(uid, at, 8)
  t.not(ours.shardHex, 'C8')
  t.is(referenceDigits(uid), '456')
  const data = payload(3000, 21)
  // The shard as the original's packer writes it: at the key its routing gives.
  const w = ShardWriter.create(path.join(dir, '20240301_C8_0000.des'), {})
  await w.add(uid, data)
  await w.finish()
  const store = new Store({ sources: singleSource(new LocalSource(dir)), nBits: 8, layout: 'flat' })
  t.deepEqual(await store.read(await store.find(uid, at)), data)
  const v = await runCli(['verify', '--store', '--base-dir', dir, '--layout', 'flat', '--n-bits', '8', '--json'], { env: { DES_BACKEND: '', DES_LAYOUT: '' } })
  t.is(v.code, 0, v.stderr + v.stdout.toString())
  t.notRegex(v.stdout.toString(), /misplaced/)
  // Converted to the nested layout, it keeps that shard's key, where nested readers look too.
  const c = await runCli(['convert', '--base-dir', dir, '--n-bits', '8', '--delete-source'], { env: { DES_BACKEND: '', DES_LAYOUT: '' } })
  t.is(c.code, 0, c.stderr + c.stdout.toString())
  t.true(fs.existsSync(path.join(dir, '20240301', 'C8.des')))
  const nested = new Store({ sources: singleSource(new LocalSource(dir)), nBits: 8, layout: 'nested' })
  t.deepEqual(await nested.read(await nested.find(uid, at)), data)
  const vn = await runCli(['verify', '--store', '--base-dir', dir, '--layout', 'nested', '--n-bits', '8', '--json'], { env: { DES_BACKEND: '', DES_LAYOUT: '' } })
  t.is(vn.code, 0, vn.stderr + vn.stdout.toString())
  t.notRegex(vn.stdout.toString(), /misplaced/)
})
