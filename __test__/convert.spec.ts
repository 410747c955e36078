// des convert: a store written by the reference packer (golden/flat-store-offsets,
// its timestamps in several offsets) moved into the nested layout, killed part
// way twice and resumed, on local disk and on the real MinIO. While it runs,
// one des serve configuration (DES_LAYOUT=nested,flat) serves every file;
// after it, the nested layout alone serves every file byte-exact. A server
// that had a flat shard cached when it was removed serves its files from
// their nested copies.

import test from 'ava'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import type { Layout } from '../src/config/env'
import { LocalSource } from '../src/storage/local'
import { S3Source } from '../src/storage/s3'
import { singleSource, type ShardSources } from '../src/storage/source'
import { Store } from '../src/store/store'
import { locateShard, ShardWriter } from '../src/native'
import { createServer } from '../src/serve/server'
import { runCli, type CliResult } from './helpers/cli'
import { goldenPath, readJson } from './helpers/golden'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { closeServer, listenLocal, tempDir, uploadDir } from './helpers/store'
import { BACKENDS, openBackend } from './helpers/backends'
import { flatShardKey } from '../src/store/layout'

interface Expect {
  n_bits: number
  files: Array<{ uid: string; created_at: string; size: number; sha256: string; date_dir: string }>
}
const golden = readJson<Expect>(goldenPath('flat-store-offsets', 'expect.json'))
const sha = (b: ArrayBuffer) => createHash('sha256').update(Buffer.from(b)).digest('hex')

/** Every golden file asked over HTTP from a store of these sources and layouts: the uids that did not come back byte-exact. */
async function unserved(sources: ShardSources, layouts: Layout[]): Promise<string[]> {
  const server = createServer({ store: new Store({ sources, nBits: golden.n_bits, layouts, indexCacheBytes: 0 }) })
  const url = await listenLocal(server)
  const bad: string[] = []
  try {
    for (const f of golden.files) {
      const r = await fetch(`${url}/files/${encodeURIComponent(f.uid)}?created_at=${encodeURIComponent(f.created_at)}`)
      const body = await r.arrayBuffer()
      if (r.status !== 200 || sha(body) !== f.sha256) bad.push(`${f.uid} ${r.status}`)
    }
  } finally {
    await closeServer(server)
  }
  return bad
}

function convert(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  // The golden store's BigFile threshold, so its BigFiles stay BigFiles.
  return runCli(['convert', '--n-bits', String(golden.n_bits), '--json', ...args], { env: { DES_BIG_FILE_THRESHOLD_BYTES: '200000', ...env } })
}

const report = (r: CliResult) => JSON.parse(r.stdout.toString()) as Record<string, any>

/** The kill-and-resume run over one store; `keys()` lists its objects. */
async function killedAndResumed(t: import('ava').ExecutionContext, storeArgs: string[], env: NodeJS.ProcessEnv, sources: ShardSources, keys: () => Promise<string[]>): Promise<void> {
  const flatKeys = async () => (await keys()).filter((k) => /^\d{8}_[0-9A-F]_\d{4}\.des$/.test(k) || k.startsWith('_bigFiles/'))
  const before = await flatKeys()
  t.is(before.filter((k) => k.endsWith('.des')).length, 52)

  // Killed after removing the flat shards of its second key.
  let r = await convert([...storeArgs, '--delete-source'], { ...env, DES_TEST_FAULT: 'convert-mid-delete' })
  t.is(r.code, -1, `killed by its fault point: ${r.stderr}`)
  const mid = await flatKeys()
  t.true(mid.length < before.length && mid.length > 0, 'some flat shards are gone, most are not')
  // Half converted: one configuration serves every file.
  t.deepEqual(await unserved(sources, ['nested', 'flat']), [])

  // Killed again, after packing its second key this time.
  r = await convert([...storeArgs, '--delete-source'], { ...env, DES_TEST_FAULT: 'convert-after-pack' })
  t.is(r.code, -1, `killed by its fault point: ${r.stderr}`)
  t.deepEqual(await unserved(sources, ['nested', 'flat']), [])

  // Resumed to the end: every file verified at its new key, every flat shard and BigFile removed.
  r = await convert([...storeArgs, '--delete-source'], env)
  t.is(r.code, 0, r.stderr)
  const done = report(r)
  t.deepEqual([done.problems, done.failed, done.kept], [[], [], []])
  t.is(done.verified, done.files)
  t.deepEqual(await flatKeys(), [])
  t.deepEqual(await unserved(sources, ['nested']), [])

  // Idempotent: nothing left to do.
  r = await convert([...storeArgs, '--delete-source'], env)
  t.is(r.code, 0, r.stderr)
  t.like(report(r), { keys: 0, files: 0, added: 0, deleted_shards: 0 })
}

test('local: des convert killed twice and resumed moves every file of golden/flat-store-offsets into the nested layout, served byte-exact throughout', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  fs.rmSync(path.join(dir, 'expect.json'))
  const sources = singleSource(new LocalSource(dir))
  t.deepEqual(await unserved(sources, ['flat']), [])
  const keys = async () => {
    const out: string[] = []
    for await (const o of new LocalSource(dir).list()) out.push(o.key)
    return out
  }
  await killedAndResumed(t, ['--base-dir', dir], {}, sources, keys)
  // No empty flat BigFile folder is left behind.
  t.false(fs.existsSync(path.join(dir, '_bigFiles')))
})

test('local: without --delete-source nothing is removed, and a rerun adds nothing and verifies everything again', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const first = await convert(['--base-dir', dir], {})
  t.is(first.code, 0, first.stderr)
  t.like(report(first), { keys: 45, flat_shards: 52, files: 120, added: 120, already_nested: 0, verified: 120, deleted_shards: 0 })
  const again = await convert(['--base-dir', dir], {})
  t.like(report(again), { files: 120, added: 0, already_nested: 120, verified: 120 })
  t.is(fs.readdirSync(dir).filter((n) => n.endsWith('.des')).length, 52)
  t.deepEqual(await unserved(singleSource(new LocalSource(dir)), ['nested']), [])
})

test('local: a rerun removes the temp files a killed run left in the nested folders it writes to, once they are stale', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  fs.rmSync(path.join(dir, 'expect.json'))
  // What a run killed mid-write leaves: a part being written, a BigFile on its way.
  const dead = [path.join(dir, '20240301', '.des-tmp-dead01.part'), path.join(dir, '20240301', '_bigFiles', '.des-tmp-dead02.part')]
  const hourAgo = new Date(Date.now() - 61 * 60_000)
  for (const file of dead) {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, Buffer.alloc(5000, 7))
    fs.utimesSync(file, hourAgo, hourAgo)
  }
  const r = await convert(['--base-dir', dir], {})
  t.is(r.code, 0, r.stderr)
  t.is(report(r).temps_removed, 2)
  for (const file of dead) t.false(fs.existsSync(file), file)
})

test('local: a temp directory that cannot be used (TMPDIR) stops the run once, by name (exit 2), before any key', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const r = await runCli(['convert', '--base-dir', dir, '--json'], { env: { TMPDIR: path.join(dir, 'no-such-folder') } })
  t.is(r.code, 2, r.stderr)
  t.regex(r.stderr, /the temp directory .*no-such-folder \(TMPDIR\) does not exist/)
  t.false(fs.readdirSync(dir).some((n) => /^\d{8}$/.test(n)), 'no nested shard written')
})

test('local: a flat shard whose uid routes elsewhere (wrong --n-bits) converts nothing of its key and fails the run', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const r = await runCli(['convert', '--base-dir', dir, '--n-bits', '8', '--json'])
  t.is(r.code, 4)
  const out = report(r)
  t.is(out.failed.length, 45)
  t.regex(out.failed[0].reason, /routes to .* with n_bits 8/)
  t.false(fs.readdirSync(dir).some((n) => /^\d{8}$/.test(n)), 'no nested shard written')
})

test("local: a flat key whose shard has the original's .meta sidecar (its deletions) is not converted, nor removed; the run fails, and the deleted file stays 410", async (t) => {
  const dir = tempDir('des-convert-')
  const fixture = path.join(__dirname, 'fixtures', 'tombstones')
  for (const name of ['20240301_9_0000.des', '20240301_9_0000.meta']) fs.copyFileSync(path.join(fixture, name), path.join(dir, name))
  const r = await runCli(['convert', '--base-dir', dir, '--n-bits', '4', '--delete-source', '--json'])
  t.is(r.code, 4, r.stderr)
  t.regex(report(r).failed[0].reason, /20240301_9_0000\.des has a \.meta sidecar beside it/)
  t.false(fs.existsSync(path.join(dir, '20240301')), 'no nested shard written')
  t.true(fs.existsSync(path.join(dir, '20240301_9_0000.des')), 'the flat shard kept')
  const store = new Store({ sources: singleSource(new LocalSource(dir)), nBits: 4, layouts: ['nested', 'flat'] })
  await t.throwsAsync(store.get('doc-1', '2024-03-01T10:00:00.250000+02:00'), { code: 'DES_DELETED' })
  t.is((await store.get('doc-24', '2024-03-01T11:30:00+02:00')).toString(), 'kept beside it\n')
})

test('local: a uid stored twice with other bytes (the second copy never served) keeps its flat shards and fails the run; the served copy is converted', async (t) => {
  const dir = tempDir('des-convert-')
  const iso = '2024-03-01T10:00:00Z'
  const hex = locateShard('x', iso, 4).shardHex
  const first = ShardWriter.create(path.join(dir, `20240301_${hex}_0000.des`), { codec: 'none' })
  await first.add('x', Buffer.from('the copy readers get'))
  await first.finish()
  const second = ShardWriter.create(path.join(dir, `20240301_${hex}_0001.des`), { codec: 'none' })
  await second.add('x', Buffer.from('a shadowed copy'))
  await second.finish()
  const r = await runCli(['convert', '--base-dir', dir, '--n-bits', '4', '--delete-source', '--json'])
  t.is(r.code, 4, r.stderr)
  const out = report(r)
  t.is(out.problems.length, 1)
  t.is(out.problems[0].key, `20240301_${hex}_0001.des`)
  t.regex(out.problems[0].reason, /second time with other bytes/)
  t.deepEqual(out.kept.map((k: { key: string }) => k.key).sort(), [`20240301_${hex}_0000.des`, `20240301_${hex}_0001.des`])
  const store = new Store({ sources: singleSource(new LocalSource(dir)), nBits: 4 })
  t.is((await store.get('x', iso)).toString(), 'the copy readers get')
})

test('local: a uid stored on two days with other bytes keeps both keys flat and fails the run: nested, a request written on one day whose UTC date is the other would get the other copy', async (t) => {
  const dir = tempDir('des-convert-')
  const march1 = '2024-03-01T23:30:00-05:00' // written on March 1st, March 2nd in UTC
  const march2 = '2024-03-02T10:00:00Z'
  const hex = locateShard('report-7', march2, 4).shardHex
  for (const [date, body] of [['20240301', 'written on March 1st, New York'], ['20240302', 'written on March 2nd, UTC']]) {
    const w = ShardWriter.create(path.join(dir, `${date}_${hex}_0000.des`), { codec: 'none' })
    await w.add('report-7', Buffer.from(body))
    await w.finish()
  }
  const r = await runCli(['convert', '--base-dir', dir, '--n-bits', '4', '--delete-source', '--json'])
  t.is(r.code, 4, r.stderr)
  const out = report(r)
  t.deepEqual(out.failed.map((f: { key: string }) => f.key).sort(), [`20240301_${hex}`, `20240302_${hex}`])
  t.regex(out.failed[0].reason, /uid "report-7" is also in 2024030[12]_.*with other bytes/)
  t.is(out.deleted_shards, 0)
  const store = new Store({ sources: singleSource(new LocalSource(dir)), nBits: 4, layouts: ['nested', 'flat'] })
  t.is((await store.get('report-7', march1)).toString(), 'written on March 1st, New York')
  t.is((await store.get('report-7', march2)).toString(), 'written on March 2nd, UTC')
})

test('S3 (MinIO): des convert killed twice and resumed moves every file of golden/flat-store-offsets into the nested layout, served byte-exact throughout', async (t) => {
  const s3 = s3TestEnv()
  const client: S3Client = testS3Client()
  const bucket = await freshBucket(client, 'des-convert')
  const prefix = 'archive/'
  await uploadDir(client, bucket, goldenPath('flat-store-offsets'), prefix, (k) => k !== 'expect.json')
  const sources = singleSource(new S3Source(client, { bucket, prefix }, 's3'))
  t.deepEqual(await unserved(sources, ['flat']), [])
  const keys = async () => {
    const out: string[] = []
    let token: string | undefined
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
      for (const o of page.Contents ?? []) out.push(o.Key!.slice(prefix.length))
      token = page.NextContinuationToken
    } while (token)
    return out
  }
  const env = { DES_BACKEND: 's3', DES_S3_BUCKET: bucket, DES_S3_PREFIX: prefix, DES_S3_ENDPOINT_URL: s3.endpoint, DES_S3_REGION: s3.region }
  await killedAndResumed(t, [], env, sources, keys)
})

test('local: a flat BigFile whose bytes are not its sha256 is not copied into the nested layout; its key stays flat and the run fails', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const damaged = golden.files.find((f) => f.size >= 200_000)!
  const big = path.join(dir, '_bigFiles', damaged.sha256)
  const bytes = fs.readFileSync(big)
  bytes[1000] ^= 0x5a
  fs.writeFileSync(big, bytes)
  const r = await convert(['--base-dir', dir, '--delete-source'], {})
  t.is(r.code, 4, r.stderr)
  const out = report(r)
  t.true(out.failed.some((f: { reason: string }) => /has sha256 .*its name says/.test(f.reason)), JSON.stringify(out.failed))
  // No nested file for it, damaged or not: the flat copy (cut short by its check when read) is all there is.
  const nested = new Store({ sources: singleSource(new LocalSource(dir)), nBits: golden.n_bits, layouts: ['nested'] })
  const err = await t.throwsAsync(nested.find(damaged.uid, damaged.created_at))
  t.is((err as { code?: string }).code, 'DES_NOT_FOUND')
  t.true(fs.existsSync(big), 'the flat BigFile is kept')
})

test('local: a kept flat key whose first part cannot be read keeps every flat BigFile (a later part may name one); nothing it names is removed', async (t) => {
  const dir = tempDir('des-convert-')
  const iso = '2024-03-01T10:00:00Z'
  const shared = Buffer.alloc(300, 0x33)
  const opts = { codec: 'none' as const, bigFileThreshold: 100, bigfilesDir: path.join(dir, '_bigFiles') }
  // Two keys whose files have the same bytes: one BigFile, named by both.
  const [a, b] = ['a', 'b'].map((p) => Array.from({ length: 100 }, (_, i) => `${p}${i}`).find((u) => locateShard(u, iso, 4).shardHex === (p === 'a' ? '1' : '2'))!)
  const write = async (name: string, uid: string, data: Buffer) => {
    const w = ShardWriter.create(path.join(dir, name), opts)
    await w.add(uid, data)
    await w.finish()
  }
  await write('20240301_1_0000.des', a, shared)
  await write('20240301_2_0000.des', `${b}-pad`, Buffer.from('small'))
  await write('20240301_2_0001.des', b, shared)
  // Key 2's first part is damaged: key 2 is not converted, and its second part (naming the BigFile) stays.
  const first = path.join(dir, '20240301_2_0000.des')
  fs.truncateSync(first, fs.statSync(first).size - 3)
  const r = await runCli(['convert', '--base-dir', dir, '--n-bits', '4', '--delete-source', '--json'], { env: { DES_BIG_FILE_THRESHOLD_BYTES: '100' } })
  t.is(r.code, 4, r.stderr)
  t.true(fs.existsSync(path.join(dir, '20240301_2_0001.des')))
  const name = createHash('sha256').update(shared).digest('hex')
  t.deepEqual(fs.readdirSync(path.join(dir, '_bigFiles')), [name], 'the flat BigFile the kept part names is still there')
  t.true(fs.readFileSync(path.join(dir, '_bigFiles', name)).equals(shared))
})

test('local: a flat shard whose footer is damaged is named by its store-relative key, never by the machine path of the store', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const victim = fs.readdirSync(dir).find((f) => f.endsWith('_0000.des'))!
  fs.copyFileSync(goldenPath('corrupt', 'bad-footer-magic.des'), path.join(dir, victim))
  const r = await runCli(['convert', '--base-dir', dir, '--n-bits', String(golden.n_bits)], { env: { DES_BIG_FILE_THRESHOLD_BYTES: '200000' } })
  t.is(r.code, 4, r.stderr)
  t.regex(r.stderr, new RegExp(`shard ${victim}: corrupt shard: bad footer magic`))
  t.false(r.stderr.includes(dir), r.stderr)
})

test('local: a flat shard behind a link whose target is gone keeps its key flat and fails the run (it is not taken for absent)', async (t) => {
  const dir = tempDir('des-convert-')
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const first = fs.readdirSync(dir).find((f) => f.endsWith('_0000.des') && fs.existsSync(path.join(dir, f.replace('_0000', '_0001'))))!
  const later = first.replace('_0000', '_0001')
  fs.rmSync(path.join(dir, first))
  fs.symlinkSync(path.join(tempDir('des-convert-gone-'), first), path.join(dir, first))
  const r = await convert(['--base-dir', dir, '--delete-source'], {})
  t.is(r.code, 4, r.stderr)
  t.true(report(r).failed.some((f: { key: string }) => first.startsWith(f.key)), JSON.stringify(report(r).failed))
  t.true(fs.existsSync(path.join(dir, later)), 'the later part of its key is kept')
})

test('des convert refuses a zstd level des pack refuses, in the same words', async (t) => {
  const dir = tempDir('des-convert-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  for (const level of ['99', '-100', 'abc']) {
    const r = await runCli(['convert', '--base-dir', dir, '--level', level])
    const pack = await runCli(['pack', '--input-json', path.join(dir, 'm.json'), '--output-dir', dir, '--level', level])
    t.is(r.code, 2, r.stderr)
    t.is(r.stderr, `des: --level "${level}": expected a zstd level -7..22\n`)
    t.is(pack.code, 2, pack.stderr)
    t.is(pack.stderr, r.stderr)
  }
})

test('local: --base-dir converts the local store even with DES_BACKEND=s3 set, as serve and verify --store take it', async (t) => {
  const dir = tempDir('des-convert-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.cpSync(goldenPath('flat-store-offsets'), dir, { recursive: true })
  const r = await convert(['--base-dir', dir], { DES_BACKEND: 's3', DES_S3_BUCKET: '' })
  t.is(r.code, 0, r.stderr)
  t.like(report(r), { store: dir, files: 120, added: 120, verified: 120 })
})

for (const kind of BACKENDS) {
  test(`${kind}: a server with the flat shard's index cached, told nothing of des convert --delete-source, serves its files from their nested copies (no 404, no 502): decoded, as stored, a BigFile whole, in a range and to HEAD`, async (t) => {
    const dir = tempDir('des-convert-')
    const iso = '2024-03-01T10:00:00Z'
    const text = Buffer.from('a line that compresses well. '.repeat(200))
    const big = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251))
    // 7 and 263 route to the same key (n_bits 8); 263 is a BigFile, its object removed with the key.
    const flat = flatShardKey(locateShard('7', iso), 0)
    const w = ShardWriter.create(path.join(dir, flat), { codec: 'zstd', bigFileThreshold: 200_000, bigfilesDir: path.join(dir, '_bigFiles') })
    await w.add('7', text)
    await w.add('263', big)
    await w.finish()
    const b = await openBackend(kind, dir)
    const file = `/files/7?created_at=${iso}`
    const bigFile = `/files/263?created_at=${iso}`
    const zstd = { 'Accept-Encoding': 'zstd' }
    const servers: http.Server[] = []
    // Trusted all through the test, as it is for DES_SHARD_RECHECK_MS; no payload cache to answer from.
    const serve = async (layouts: Layout[]) => {
      const server = createServer({ store: b.store({ layouts, shardRecheckMs: 3_600_000, payloadCacheBytes: 0 }), zstdPassthrough: true })
      servers.push(server)
      return listenLocal(server)
    }
    try {
      // One server for each request below, each with the flat shard cached: each request meets it.
      const warm = await Promise.all(Array.from({ length: 5 }, () => serve(['nested', 'flat'])))
      for (const url of warm) {
        t.is((await fetch(url + file)).status, 200)
        t.is((await fetch(url + bigFile)).status, 200)
      }
      const env = kind === 'local' ? {} : { DES_BACKEND: 's3', DES_S3_BUCKET: b.bucket, DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_S3_REGION: s3TestEnv().region }
      const r = await runCli(['convert', '--n-bits', '8', '--delete-source', '--json', ...(kind === 'local' ? ['--base-dir', dir] : [])], { env: { DES_BIG_FILE_THRESHOLD_BYTES: '200000', ...env } })
      t.is(r.code, 0, r.stderr)
      t.like(report(r), { deleted_shards: 1, deleted_bigfiles: 1 })
      const plain = await fetch(warm[0] + file)
      t.is(plain.status, 200)
      t.deepEqual(Buffer.from(await plain.arrayBuffer()), text)
      // As stored: what a server that never saw the flat shard sends.
      const asStored = (base: string) =>
        new Promise<{ status: number; encoding?: string; body: Buffer }>((resolve, reject) =>
          http
            .get(base + file, { headers: zstd }, (res) => {
              const chunks: Buffer[] = []
              res.on('data', (c: Buffer) => chunks.push(c))
              res.on('end', () => resolve({ status: res.statusCode ?? 0, encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }))
            })
            .on('error', reject),
        )
      const got = await asStored(warm[1])
      t.is(got.status, 200, got.body.toString())
      t.deepEqual(got, await asStored(await serve(['nested'])))
      t.is((await fetch(warm[2] + bigFile, { method: 'HEAD' })).status, 200)
      const whole = await fetch(warm[3] + bigFile)
      t.is(whole.status, 200)
      t.deepEqual(Buffer.from(await whole.arrayBuffer()), big)
      const range = await fetch(warm[4] + bigFile, { headers: { Range: 'bytes=1000-1999' } })
      t.is(range.status, 206)
      t.deepEqual(Buffer.from(await range.arrayBuffer()), big.subarray(1000, 2000))
    } finally {
      await Promise.all(servers.map(closeServer))
    }
  })
}
