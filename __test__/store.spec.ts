// The store over every backend: (uid, created_at) → bytes, the index cache and
// its re-check rule, continuations, BigFiles, and what a read costs on S3.

import test from 'ava'
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { errorCode } from '../src/errors'
import { locateShard, ShardWriter } from '../src/native'
import { s3RangeCallsTotal } from '../src/metrics'
import { flatShardKey, shardKey } from '../src/store/layout'
import { BACKENDS, describeSent, openBackend, shardGets, sidecarGets } from './helpers/backends'
import { payload, tempDir, writeStore, type TestFile } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex')
}

/** A store of 60 small files over a few shards of one day, plus one BigFile. */
/** One file in a shard of the flat layout (the original's) at `DAY`; resolves to the shard's key. */
async function writeFlatFile(dir: string, uid: string, text: string): Promise<string> {
  const key = flatShardKey(locateShard(uid, DAY), 0)
  const w = ShardWriter.create(path.join(dir, key), { codec: 'none' })
  await w.add(uid, Buffer.from(text))
  await w.finish()
  return key
}

async function sampleStore(): Promise<{ dir: string; files: TestFile[]; big: TestFile }> {
  const dir = tempDir()
  const files: TestFile[] = []
  for (let i = 0; i < 60; i++) files.push({ uid: String(1000 + i * 256), createdAt: DAY, data: payload(100 + i * 37, i), meta: i % 2 ? { content_type: 'text/plain' } : undefined })
  files.push({ uid: 'empty', createdAt: DAY, data: Buffer.alloc(0) })
  const big = { uid: 'big-1', createdAt: DAY, data: payload(300_000, 99) }
  await writeStore(dir, [...files, big], { writer: { bigFileThreshold: 100_000 } })
  return { dir, files, big }
}

for (const kind of BACKENDS) {
  const title = (s: string) => `[${kind}] ${s}`

  test(title('a continuation part replaced, then deleted, is seen once a shard\'s trust runs out, payload cache or not'), async (t) => {
    const dir = tempDir()
    const part1 = async (data: Buffer) => {
      // Written beside, then renamed over (as a writer replaces a part).
      const tmp = tempDir()
      const [key] = await writeStore(tmp, [{ uid: '263', createdAt: DAY, data }], { part: 1, writer: { codec: 'none' } })
      fs.mkdirSync(path.dirname(path.join(dir, key)), { recursive: true })
      fs.copyFileSync(path.join(tmp, key), path.join(dir, `${key}.new`))
      fs.renameSync(path.join(dir, `${key}.new`), path.join(dir, key))
      return key
    }
    // 263 routes to the same shard as 7 (263 mod 256): 7 in the base part, 263 in part 1.
    await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('base part') }])
    const key = await part1(Buffer.from('version A of 263'))
    const b = await openBackend(kind, dir)
    let now = 0
    const store = b.store({ payloadCacheBytes: 1 << 20, shardRecheckMs: 1000, clock: () => now })
    t.is((await store.get('263', DAY)).toString(), 'version A of 263')
    t.is((await store.get('263', DAY)).toString(), 'version A of 263', 'from the payload cache')
    await part1(Buffer.from('version B of 263'))
    await b.sync((k) => k === key)
    now += 1500
    t.is((await store.get('263', DAY)).toString(), 'version B of 263')
    if (kind === 'local') fs.rmSync(path.join(dir, key))
    else await b.client!.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: key }))
    now += 1500
    const gone = await t.throwsAsync(store.get('263', DAY))
    t.is(errorCode(gone), 'DES_NOT_FOUND')
    t.is((await store.get('7', DAY)).toString(), 'base part')
    // Its absence noted by a miss (519 routes there too)...
    t.is(errorCode(await t.throwsAsync(store.get('519', DAY))), 'DES_NOT_FOUND')
    // ...and made again at once (the clock not moved): found at once, not after that absence is forgotten.
    await part1(Buffer.from('version C of 263'))
    await b.sync((k) => k === key)
    t.is((await store.get('263', DAY)).toString(), 'version C of 263')
  })

  // Counted in the GETs S3 answers (locally there is nothing to count).
  if (kind === 's3') test(title('with layouts nested then flat, a file of the flat layout is read once, then from the caches'), async (t) => {
    const dir = tempDir()
    const key = await writeFlatFile(dir, '7', 'flat file')
    const b = await openBackend(kind, dir)
    const store = b.store({ layouts: ['nested', 'flat'], payloadCacheBytes: 1 << 20 })
    b.sent.length = 0
    for (let i = 0; i < 5; i++) t.is((await store.get('7', DAY)).toString(), 'flat file')
    t.is(b.sent.filter((r) => r.key.endsWith(key)).length, 2, `one tail and one payload read of the flat shard: ${describeSent(b.sent)}`)
    const nested = shardKey(locateShard('7', DAY))
    t.is(b.sent.filter((r) => r.key.endsWith(nested)).length, 1, `the missing nested shard asked for once: ${describeSent(b.sent)}`)
  })

  // Counted in the GETs S3 answers (locally there is nothing to count).
  if (kind === 's3') test(title('with layouts nested then flat, a warm read of a flat file whose nested key holds other files costs no GET; a file appended to that nested key is still found'), async (t) => {
    const dir = tempDir()
    await writeStore(dir, [{ uid: '263', createdAt: DAY, data: Buffer.from('nested file') }])
    const key = await writeFlatFile(dir, '7', 'flat file')
    const b = await openBackend(kind, dir)
    const store = b.store({ layouts: ['nested', 'flat'], payloadCacheBytes: 1 << 20 })
    t.is((await store.get('7', DAY)).toString(), 'flat file')
    b.sent.length = 0
    for (let i = 0; i < 5; i++) t.is((await store.get('7', DAY)).toString(), 'flat file')
    t.deepEqual(describeSent(b.sent), [], 'the cached nested index is not re-checked for a file found in the flat one')
    // 519 routes there too: appended to the cached nested shard, found by the re-check made before a 404.
    await writeStore(dir, [{ uid: '519', createdAt: DAY, data: Buffer.from('appended') }], { append: true })
    await b.sync((k) => k === shardKey(locateShard('519', DAY)))
    t.is((await store.get('519', DAY)).toString(), 'appended')
  })

  test(title('every file reads back byte-exact, BigFile included'), async (t) => {
    const { dir, files, big } = await sampleStore()
    const b = await openBackend(kind, dir)
    const store = b.store()
    for (const f of files) t.true((await store.get(f.uid, f.createdAt)).equals(f.data), f.uid)
    const found = await store.find(big.uid, big.createdAt)
    t.true(found.entry.isBigfile)
    t.is(sha(await store.get(big.uid, big.createdAt)), sha(big.data))
  })

  test(title('an unknown uid or a date with no shard is DES_NOT_FOUND'), async (t) => {
    const { dir } = await sampleStore()
    const store = (await openBackend(kind, dir)).store()
    t.is(errorCode(await t.throwsAsync(store.find('1000', '2030-01-01T00:00:00Z'))), 'DES_NOT_FOUND')
    t.is(errorCode(await t.throwsAsync(store.find(String(1000 + 256 * 500), DAY))), 'DES_NOT_FOUND')
    t.is(errorCode(await t.throwsAsync(store.find('1000', 'not a date'))), 'DES_BAD_ARG')
  })

  test(title('a continuation shard is consulted only after a miss in the base shard'), async (t) => {
    const dir = tempDir()
    await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('in base') }])
    await writeStore(dir, [{ uid: '263', createdAt: DAY, data: Buffer.from('in part 1') }], { part: 1 })
    await writeStore(dir, [{ uid: '519', createdAt: DAY, data: Buffer.from('in part 2') }], { part: 2 })
    const b = await openBackend(kind, dir)
    const store = b.store()
    t.is((await store.get('7', DAY)).toString(), 'in base')
    if (kind === 's3') t.deepEqual(b.sent.map((r) => r.key).filter((k) => k.includes('.1.des')), [], 'base hit: no continuation read')
    t.is((await store.get('263', DAY)).toString(), 'in part 1')
    t.is((await store.get('519', DAY)).toString(), 'in part 2')
    t.is((await store.find('519', DAY)).part, 2)
    t.is(errorCode(await t.throwsAsync(store.find('775', DAY))), 'DES_NOT_FOUND')
  })

  test(title('a uid missing from a cached index re-checks the object, so an appended shard is seen'), async (t) => {
    const dir = tempDir()
    await writeStore(dir, [{ uid: '5', createdAt: DAY, data: Buffer.from('first') }])
    const b = await openBackend(kind, dir)
    const store = b.store()
    t.is((await store.get('5', DAY)).toString(), 'first') // index now cached
    t.is(errorCode(await t.throwsAsync(store.find('261', DAY))), 'DES_NOT_FOUND')
    // The packer appends to the same key (a new object replaces the old one).
    const w = await ShardWriter.append(path.join(dir, '20240301/05.des'))
    await w.add('261', Buffer.from('appended'))
    await w.finish()
    await b.sync((k) => k.endsWith('.des'))
    t.is((await store.get('261', DAY)).toString(), 'appended')
    t.is((await store.get('5', DAY)).toString(), 'first')
  })

  test(title('a BigFile whose object has the wrong size or bytes is refused as corrupt'), async (t) => {
    const { dir, big } = await sampleStore()
    const loc = locateShard(big.uid, big.createdAt)
    const bigPath = path.join(dir, loc.dateDir, '_bigFiles', sha(big.data))
    const tampered = Buffer.from(big.data)
    tampered[12345] ^= 0xff
    fs.writeFileSync(bigPath, tampered)
    const b = await openBackend(kind, dir)
    const store = b.store()
    const err = await t.throwsAsync(store.get(big.uid, big.createdAt))
    t.is(errorCode(err), 'DES_CORRUPT')
    t.regex(err!.message, /sha256/)
    fs.writeFileSync(bigPath, tampered.subarray(0, 1000))
    await b.sync((k) => k.includes('_bigFiles'))
    const err2 = await t.throwsAsync(store.get(big.uid, big.createdAt))
    t.is(errorCode(err2), 'DES_CORRUPT')
    t.regex(err2!.message, /1000 bytes, the index says 300000/)
    // Gone, from a shard that has not changed: damage too, for a read and for what a HEAD checks.
    fs.rmSync(bigPath)
    if (kind === 's3') await b.client!.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: path.relative(dir, bigPath) }))
    const err3 = await t.throwsAsync(store.get(big.uid, big.createdAt))
    t.is(errorCode(err3), 'DES_CORRUPT')
    t.regex(err3!.message, /is missing/)
    t.is(errorCode(await t.throwsAsync(store.checkReadable(await store.find(big.uid, big.createdAt)))), 'DES_CORRUPT')
  })

  test(title('the index cache is bounded in bytes'), async (t) => {
    const dir = tempDir()
    const files: TestFile[] = []
    for (let i = 0; i < 200; i++) files.push({ uid: `u-${i}`, createdAt: DAY, data: Buffer.from(`x${i}`) })
    await writeStore(dir, files)
    const store = (await openBackend(kind, dir)).store({ indexCacheBytes: 4000 })
    for (const f of files) await store.get(f.uid, f.createdAt)
    const { bytes, entries } = store.indexCache.stats
    t.true(bytes <= 4000, `${bytes} bytes cached`)
    t.true(entries > 0 && entries < 200)
  })

  test(title('concurrent cold reads of one shard share one index load'), async (t) => {
    const { dir, files } = await sampleStore()
    const b = await openBackend(kind, dir)
    const store = b.store()
    const sameShard = files.filter((f) => locateShard(f.uid, f.createdAt).shardIndex === locateShard(files[0].uid, DAY).shardIndex)
    t.true(sameShard.length > 10)
    const results = await Promise.all(sameShard.map((f) => store.get(f.uid, f.createdAt)))
    results.forEach((r, i) => t.true(r.equals(sameShard[i].data)))
    if (kind === 's3') {
      t.is(b.sent.filter((r) => r.range?.startsWith('bytes=-')).length, 1, describeSent(b.sent).join('\n'))
      // The tail, its sidecar's GET made with it, a payload each.
      t.is(b.sent.length, 2 + sameShard.length)
    } else t.is(store.indexCache.stats.entries, 1)
  })
}

if (BACKENDS.includes('s3')) {
  test.serial('[s3] a cold read costs two GETs (tail, payload), a warm one costs one; no HEAD, no LIST', async (t) => {
    const { dir, files } = await sampleStore()
    const b = await openBackend('s3', dir)
    const store = b.store()
    const metric = async () => (await s3RangeCallsTotal.get()).values.filter((v) => v.labels.backend === 's3').reduce((n, v) => n + v.value, 0)
    const m0 = await metric()
    t.true((await store.get(files[0].uid, DAY)).equals(files[0].data))
    // The original's deletion sidecar is asked for with the tail, at the same time: still two round trips.
    t.deepEqual(
      shardGets(b.sent).map((r) => [r.method, r.range?.startsWith('bytes=-') ? 'tail' : 'range']),
      [
        ['GET', 'tail'],
        ['GET', 'range'],
      ],
      describeSent(b.sent).join('\n'),
    )
    t.deepEqual(describeSent(sidecarGets(b.sent)), [`GET /${b.bucket}/${shardKey(locateShard(files[0].uid, DAY)).replace(/\.des$/, '.meta')} ?x-id`])
    t.is((await metric()) - m0, 2)
    b.sent.length = 0
    t.true((await store.get(files[0].uid, DAY)).equals(files[0].data))
    t.is(b.sent.length, 1, describeSent(b.sent).join('\n'))
    t.is((await metric()) - m0, 3)
  })

  test.serial('[s3] an index larger than the tail costs one more GET, for the missing part only', async (t) => {
    const dir = tempDir()
    const files: TestFile[] = []
    for (let i = 0; i < 300; i++) files.push({ uid: `${i * 256 + 3}`, createdAt: DAY, data: Buffer.from(`payload ${i}`), meta: { content_type: 'text/plain', n: i } })
    await writeStore(dir, files)
    const size = fs.statSync(path.join(dir, '20240301/03.des')).size
    const b = await openBackend('s3', dir)
    const store = b.store({ tailBytes: 1024 })
    const before = (await s3RangeCallsTotal.get()).values.find((v) => v.labels.type === 'index' && v.labels.backend === 's3')?.value ?? 0
    t.is((await store.get('3', DAY)).toString(), 'payload 0')
    const gets = shardGets(b.sent)
    const sent = describeSent(gets)
    t.is(sent.length, 3, sent.join('\n'))
    t.true(gets[0].range === 'bytes=-1024')
    const m = /bytes=(\d+)-(\d+)/.exec(gets[1].range!)!
    t.is(Number(m[2]), size - 1024 - 1, 'the second GET ends where the tail begins')
    const after = (await s3RangeCallsTotal.get()).values.find((v) => v.labels.type === 'index' && v.labels.backend === 's3')!.value
    t.is(after - before, 1)
    b.sent.length = 0
    t.is((await store.get('259', DAY)).toString(), 'payload 1')
    t.is(b.sent.length, 1)
  })

  test('[s3] an object replaced between index and payload reads: the stale find is refused (If-Match), a new get reads the new bytes', async (t) => {
    const dir = tempDir()
    await writeStore(dir, [{ uid: '9', createdAt: DAY, data: Buffer.from('old bytes') }])
    const b = await openBackend('s3', dir)
    const store = b.store()
    const found = await store.find('9', DAY)
    const dir2 = tempDir()
    await writeStore(dir2, [
      { uid: 'x-pad', createdAt: DAY, data: payload(5000) },
      { uid: '9', createdAt: DAY, data: Buffer.from('new bytes, elsewhere') },
    ].filter((f) => locateShard(f.uid, DAY).shardIndex === 9 || f.uid === '9'))
    const key = shardKey(locateShard('9', DAY))
    await b.client!.send(new PutObjectCommand({ Bucket: b.bucket, Key: key, Body: fs.readFileSync(path.join(dir2, key)) }))
    // What was found (its ETag, its offset) describes the old bytes: never the new bytes under it.
    const stale = await t.throwsAsync(store.read(found))
    t.is(errorCode(stale), 'DES_CONFLICT')
    t.true(b.sent.some((r) => r.range && !r.range.startsWith('bytes=-')), 'the payload GET was made, with If-Match')
    t.is((await store.get('9', DAY)).toString(), 'new bytes, elsewhere')
  })

  test('[s3] a key prefix is honoured', async (t) => {
    const { dir, files } = await sampleStore()
    const b = await openBackend('s3', dir, { prefix: 'stores/a/' })
    t.true((await b.store().get(files[3].uid, DAY)).equals(files[3].data))
    t.true(b.sent.every((r) => r.key.includes('stores/a/20240301/')))
  })
}

test('a repeated find is remembered only while its shard stays in the index cache', async (t) => {
  const dir = tempDir()
  // '7' and '8' route to two shards; each index is a few hundred bytes.
  await writeStore(dir, [
    { uid: '7', createdAt: DAY, data: Buffer.from('seven') },
    { uid: '8', createdAt: DAY, data: Buffer.from('eight') },
  ])
  const roomy = (await openBackend('local', dir)).store()
  await roomy.find('7', DAY) // loads the index
  const first = await roomy.find('7', DAY)
  t.is(await roomy.find('7', DAY), first, 'the same find, remembered')
  t.false(first.shard.retired)

  // An index cache with room for one small index: opening the other shard lets the first go.
  const oneShard = (await openBackend('local', dir)).store({ indexCacheBytes: first.shard.weight + 10 })
  await oneShard.find('7', DAY)
  const a = await oneShard.find('7', DAY)
  t.is(await oneShard.find('7', DAY), a)
  await oneShard.find('8', DAY)
  t.true(a.shard.retired, 'evicted from the index cache')
  const again = await oneShard.find('7', DAY)
  t.not(again, a, 'found anew, not from the memo')
  t.not(again.shard.id, a.shard.id)
  t.is((await oneShard.read(again)).toString(), 'seven')
})

test('a remembered find is never handed to another (uid, created_at) that makes the same memo text', async (t) => {
  const dir = tempDir()
  await writeStore(dir, [{ uid: 'a\nX', createdAt: DAY, data: Buffer.from('not for a') }])
  const store = (await openBackend('local', dir)).store()
  await store.find('a\nX', DAY)
  await store.find('a\nX', DAY) // remembered now
  const err = await t.throwsAsync(store.find('a', `X\n${DAY}`))
  t.is(errorCode(err), 'DES_BAD_ARG')
})

test('finds of a shard the index cache lets go are forgotten with it, and a hot shard stays cached', async (t) => {
  const dir = tempDir()
  // uids 1, 2, 3 route to three shards of similar size.
  await writeStore(dir, ['1', '2', '3'].map((uid) => ({ uid, createdAt: DAY, data: Buffer.from(`file ${uid}`) })))
  const probe = (await openBackend('local', dir)).store()
  const weight = (await probe.find('1', DAY)).shard.weight
  const store = (await openBackend('local', dir)).store({ indexCacheBytes: 2 * weight + 10 })
  await store.find('1', DAY)
  const hot = await store.find('1', DAY)
  await store.find('2', DAY)
  await store.find('2', DAY)
  t.is(store.recentFindCount, 2)
  for (let i = 0; i < 10; i++) t.is(await store.find('1', DAY), hot) // hits from the memo keep shard 1 recent
  await store.find('3', DAY) // evicts the least recently used: shard 2
  t.false(hot.shard.retired, 'the hot shard stayed')
  t.is(store.recentFindCount, 1, "shard 2's find went with its index")
})

for (const kind of BACKENDS) {
  test(`[${kind}] a rewritten entry is served anew within DES_SHARD_RECHECK_MS, even from the payload cache`, async (t) => {
    const dir = tempDir()
    await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('version one') }])
    const b = await openBackend(kind, dir)
    let now = 1_000
    const store = b.store({ payloadCacheBytes: 1 << 20, shardRecheckMs: 200, clock: () => now })
    t.is((await store.get('7', DAY)).toString(), 'version one')
    t.is((await store.get('7', DAY)).toString(), 'version one') // from the caches
    await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('version two!') }], { append: true, writer: { replace: true } })
    await b.sync()
    now += 199
    t.is((await store.get('7', DAY)).toString(), 'version one', 'trusted within the re-check interval')
    now += 2
    t.is((await store.get('7', DAY)).toString(), 'version two!', 're-checked once it ran out')
  })
}
