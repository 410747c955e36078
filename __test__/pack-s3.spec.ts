// packFiles and `des pack --s3-bucket` against the real MinIO the service
// scripts start: layout, appends (PutObject and UploadPartCopy), conditional
// completion on conflict, BigFiles, s3:// sources, v1 shards, bad buckets.

import test from 'ava'
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as path from 'node:path'
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { packFiles, runPack } from '../src/pack'
import { LIST_FROM_KEYS } from '../src/pack/s3-target'
import { locateShard } from '../src/native'
import { errorCode } from '../src/errors'
import { registry } from '../src/metrics'
import { createS3Client } from '../src/storage/s3-client'
import { S3Source } from '../src/storage/s3'
import { singleSource } from '../src/storage/source'
import { Store } from '../src/store/store'
import { runCli } from './helpers/cli'
import { goldenShards, ROOT } from './helpers/golden'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { asInputs, content, listKeys, makeCorpus, readS3Store, recordCommands, countCalls, sha256, tempDir, uidsByKey } from './helpers/pack'

const sameShard = (n: number, shard: number, from = 0) => Array.from({ length: n }, (_, i) => String(16 * (from + i) + shard))

/** A test client that records the name and outcome of every command it sends. */
const recordingClient = () => recordCommands(testS3Client())

async function noUploadsLeft(client: S3Client, bucket: string): Promise<boolean> {
  const res = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
  return (res.Uploads ?? []).length === 0
}

test('packs into <prefix><date>/<HEX>.des with BigFiles in <date>/_bigFiles/<sha256>', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'pack')
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'a.txt', size: 3000, createdAt: '2024-06-01T00:00:00Z' },
    { uid: 'b.json', kind: 'json', size: 9000, createdAt: '2024-06-02T00:00:00Z', meta: { k: 'v' } },
    { uid: 'big.bin', kind: 'random', size: 200_000, createdAt: '2024-06-02T00:00:00Z' },
  ])
  const res = await packFiles(asInputs(corpus.rows), { kind: 's3', bucket, prefix: 'store/', client }, { bigFileThreshold: 100_000 })
  t.is(res.files, 3)
  const keys = await listKeys(client, bucket)
  const shardKeys = corpus.rows.map((r) => `store/${locateShard(r.uid, r.created_at).objectKey}`)
  t.deepEqual(keys, [...new Set([...shardKeys, `store/20240602/_bigFiles/${corpus.shas.get('big.bin')}`])].sort())
  t.deepEqual(res.shards.map((s) => s.key).sort(), [...new Set(shardKeys)].sort())
  const stored = await readS3Store(client, bucket, 'store/')
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha, uid)
  t.true(stored.get('big.bin')!.isBigfile)
  // The meta given, and the content type recorded from the extension.
  t.deepEqual(stored.get('b.json')!.meta, { k: 'v', content_type: 'application/json' })
})

test('bytes stored on S3 counts the BigFiles uploaded: a duplicate once, one already in the bucket not at all', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'pack')
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'big', kind: 'random', size: 300_000 },
    { uid: 'big2', kind: 'random', size: 200_000 },
    { uid: 'small', size: 5000 },
  ])
  const target = { kind: 's3' as const, bucket, prefix: 'store/', client }
  const inputs = asInputs([...corpus.rows, { ...corpus.rows[0], uid: 'big-copy' }])
  const res = await packFiles(inputs, target, { bigFileThreshold: 100_000 })
  t.is(res.bytesIn, 805_000)
  // Four keys, one file each: the BigFiles' shards hold no payload bytes.
  t.is(res.shards.length, 4)
  const inline = res.shards.find((s) => s.uids.includes('small'))!.bytesStored
  t.true(inline > 0 && inline < 5000)
  t.is(res.bytesStored, 500_000 + inline)
  // A later run naming the same bytes finds them in the bucket: nothing uploaded for them.
  const later = await packFiles(asInputs([{ ...corpus.rows[1], uid: 'big2-later' }]), target, { bigFileThreshold: 100_000 })
  t.is(later.bytesIn, 200_000)
  t.true(later.bytesStored < 1000, String(later.bytesStored))
})

test('a second run appends to an existing object (small: one conditional PutObject); duplicates refused, replace works', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'append')
  const dir = tempDir()
  const uids = sameShard(12, 4)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 6).map((uid) => ({ uid, size: 2000 })))
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(6).map((uid) => ({ uid, kind: 'json' as const, size: 2500 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  const etag1 = (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: '20240301/4.des' }))).ETag
  calls.length = 0
  await packFiles(asInputs(b.rows), target, { nBits: 4 })
  t.true(calls.some((c) => c.name === 'PutObjectCommand' && !c.status))
  t.false(calls.some((c) => c.name === 'CreateMultipartUploadCommand'))
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 12)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha)

  const etag2 = (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: '20240301/4.des' }))).ETag
  t.not(etag1, etag2)
  const dup = await t.throwsAsync(packFiles(asInputs(a.rows.slice(0, 1)), target, { nBits: 4 }))
  t.is(errorCode(dup), 'DES_DUPLICATE')
  t.is((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: '20240301/4.des' }))).ETag, etag2, 'untouched')

  const newer = makeCorpus(path.join(dir, 'c'), [{ uid: uids[0], kind: 'random', size: 777 }])
  await packFiles(asInputs(newer.rows), target, { nBits: 4, replace: true })
  t.is((await readS3Store(client, bucket)).get(uids[0])!.sha256, newer.shas.get(uids[0]))
  const again = await packFiles(asInputs(b.rows), target, { nBits: 4, skipExisting: true })
  t.is(again.skipped, 6)
  t.is(again.files, 0)
})

test('appending to an object over 5 MiB copies the old data server-side (UploadPartCopy)', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'copy')
  const dir = tempDir()
  const uids = sameShard(30, 9)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 24).map((uid) => ({ uid, kind: 'random' as const, size: 300_000 })))
  const target = { kind: 's3' as const, bucket, prefix: 'p/', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  const size1 = (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/20240301/9.des' }))).ContentLength!
  t.true(size1 > 6 * 1024 * 1024, `old object ${size1} bytes`)
  calls.length = 0
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(24).map((uid) => ({ uid, kind: 'text' as const, size: 50_000 })))
  await packFiles(asInputs(b.rows), target, { nBits: 4 })
  const names = calls.map((c) => c.name)
  t.true(names.includes('UploadPartCopyCommand'), names.join(','))
  t.true(names.includes('CompleteMultipartUploadCommand'))
  // The old bytes were not downloaded: only tail reads of the old object.
  const stored = await readS3Store(client, bucket, 'p/')
  t.is(stored.size, 30)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
  t.true(await noUploadsLeft(client, bucket))
})

test('appending to an object over 5 MiB under a prefix with a leading slash copies it server-side on MinIO, which stores it without the slash', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'copyslash')
  const dir = tempDir()
  const uids = sameShard(30, 9)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 24).map((uid) => ({ uid, kind: 'random' as const, size: 300_000 })))
  const target = { kind: 's3' as const, bucket, prefix: '/p/', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  t.true((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/20240301/9.des' }))).ContentLength! > 6 * 1024 * 1024)
  calls.length = 0
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(24).map((uid) => ({ uid, kind: 'text' as const, size: 50_000 })))
  await packFiles(asInputs(b.rows), target, { nBits: 4 })
  t.true(calls.some((c) => c.name === 'UploadPartCopyCommand' && !c.status), calls.map((c) => `${c.name} ${c.status ?? ''}`).join(','))
  const stored = await readS3Store(client, bucket, 'p/')
  t.is(stored.size, 30)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
  t.true(await noUploadsLeft(client, bucket))
})

test('MinIO refuses a stale ETag: a conflicting writer makes the append start over, and both sets survive', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'conflict')
  const dir = tempDir()
  const uids = sameShard(40, 11)
  const base = makeCorpus(path.join(dir, 'base'), uids.slice(0, 20).map((uid) => ({ uid, kind: 'random' as const, size: 300_000 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(base.rows), target, { nBits: 4 })
  const mine = makeCorpus(path.join(dir, 'mine'), uids.slice(20, 30).map((uid) => ({ uid, size: 40_000 })))
  const theirs = makeCorpus(path.join(dir, 'theirs'), uids.slice(30).map((uid) => ({ uid, size: 30_000 })))
  const attempts: number[] = []
  calls.length = 0
  await runPack(asInputs(mine.rows), target, { nBits: 4 }, {
    s3Hooks: {
      async beforeComplete(key, attempt) {
        attempts.push(attempt)
        // Another writer gets in between our tail read and our completion.
        if (attempt === 0) await packFiles(asInputs(theirs.rows), { kind: 's3', bucket, prefix: '', client: testS3Client() }, { nBits: 4 })
      },
    },
  })
  t.deepEqual(attempts, [0, 1])
  t.true(calls.some((c) => c.name === 'CompleteMultipartUploadCommand' && c.status === 412), 'the stale completion was refused with 412')
  t.true(calls.some((c) => c.name === 'UploadPartCopyCommand' && !c.status))
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 40)
  for (const c of [base, mine, theirs]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
  t.true(await noUploadsLeft(client, bucket), 'the refused multipart upload was aborted')
})

test('a stale conditional PutObject (small shard) and a lost race to create a key both retry', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'race')
  const dir = tempDir()
  const uids = sameShard(6, 2)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 2).map((uid) => ({ uid, size: 1000 })))
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(2, 4).map((uid) => ({ uid, size: 1000 })))
  const c = makeCorpus(path.join(dir, 'c'), uids.slice(4).map((uid) => ({ uid, size: 1000 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  const attempts: number[] = []
  // Key does not exist yet: the other writer creates it first, our IfNoneMatch fails.
  await runPack(asInputs(a.rows), target, { nBits: 4 }, {
    s3Hooks: {
      async beforeComplete(_key, attempt) {
        attempts.push(attempt)
        if (attempt === 0) await packFiles(asInputs(b.rows), target, { nBits: 4 })
      },
    },
  })
  t.deepEqual(attempts, [0, 1])
  const attempts2: number[] = []
  await runPack(asInputs(c.rows), target, { nBits: 4 }, {
    s3Hooks: {
      async beforeComplete(_key, attempt) {
        attempts2.push(attempt)
        if (attempt === 0) await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'unrelated', Body: 'x' }))
      },
    },
  })
  t.deepEqual(attempts2, [0], 'an unrelated write is no conflict')
  const stored = await readS3Store(client, bucket, '2024')
  t.is(stored.size, 6)
  for (const x of [a, b, c]) for (const [uid, sha] of x.shas) t.is(stored.get(uid)!.sha256, sha)
})

test('concurrent packFiles on the same S3 keys lose nothing', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'concurrent')
  const dir = tempDir()
  const runs = [0, 100, 200].map((from, i) =>
    makeCorpus(path.join(dir, `r${i}`), [3, 7].flatMap((shard) => sameShard(8, shard, from).map((uid) => ({ uid, size: 2000 + (Number(uid) % 100) })))),
  )
  const target = { kind: 's3' as const, bucket, prefix: 'c/', client }
  await Promise.all(runs.map((r) => packFiles(asInputs(r.rows), target, { nBits: 4 })))
  const stored = await readS3Store(client, bucket, 'c/')
  t.is(stored.size, 48)
  for (const r of runs) for (const [uid, sha] of r.shas) t.is(stored.get(uid)!.sha256, sha)
})

test('continuation parts on S3 when maxShardSize would be passed', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'parts')
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'a'), sameShard(12, 5).map((uid) => ({ uid, kind: 'random' as const, size: 10_000 })))
  await packFiles(asInputs(corpus.rows), { kind: 's3', bucket, prefix: '', client }, { nBits: 4, maxShardSize: 35_000 })
  const keys = await listKeys(client, bucket)
  t.deepEqual(keys, ['20240301/5.1.des', '20240301/5.2.des', '20240301/5.3.des', '20240301/5.des'])
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 12)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha)
})

test('a date of many keys is listed once instead of probed key by key; appends and a key made after the listing lose nothing', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'listed')
  const dir = tempDir()
  const day = '2024-03-01T12:00:00Z'
  const many = uidsByKey(LIST_FROM_KEYS + 8, 3, day)
  // A second date of two keys: too few to list, probed with a GET each as before.
  const few = uidsByKey(2, 1, '2024-06-01T00:00:00Z', 'few').flat()
  const first = makeCorpus(path.join(dir, 'first'), [...many.map((u) => ({ uid: u[0], size: 900 })), ...few.map((uid) => ({ uid, size: 700, createdAt: '2024-06-01T00:00:00Z' }))])
  const target = { kind: 's3' as const, bucket, prefix: 'l/', client }
  await packFiles(asInputs(first.rows), target, { nBits: 8 })
  t.is(countCalls(calls, 'ListObjectsV2Command'), 1, 'one listing, of the date with many keys')
  t.is(countCalls(calls, 'GetObjectCommand', 404), 2 * few.length, 'a missing key of the listed date is never asked for')
  t.is(countCalls(calls, 'PutObjectCommand'), many.length + few.length)
  t.is(countCalls(calls, 'GetObjectCommand'), many.length + few.length, 'each new object read back once')

  // Every key of the listed date gets a second file: each tail is read, none is refused as a conflict.
  calls.length = 0
  const second = makeCorpus(path.join(dir, 'second'), many.map((u) => ({ uid: u[1], size: 800 })))
  await packFiles(asInputs(second.rows), target, { nBits: 8 })
  t.is(countCalls(calls, 'ListObjectsV2Command'), 1)
  t.deepEqual(calls.filter((c) => c.status !== undefined), [], 'no missing object asked for, no conflict')
  // Per key, as docs/OPERATIONS.md counts them: its tail before the writing and at it, its
  // header, its data (under 5 MiB, no server-side copy), the PUT and the read-back.
  const tails = calls.filter((c) => c.name === 'GetObjectCommand' && /^bytes=-\d+$/.test(c.range ?? ''))
  t.is(tails.length, 3 * many.length)
  t.is(calls.filter((c) => c.name === 'GetObjectCommand' && c.range === 'bytes=0-7').length, many.length, 'each header')
  t.is(countCalls(calls, 'GetObjectCommand'), 5 * many.length)
  t.is(countCalls(calls, 'PutObjectCommand'), many.length)

  // A new date, listed empty; another writer creates all its keys before our first upload completes.
  const late = uidsByKey(LIST_FROM_KEYS, 2, '2024-03-02T00:00:00Z', 'late')
  const ours = makeCorpus(path.join(dir, 'ours'), late.map((u) => ({ uid: u[0], size: 600, createdAt: '2024-03-02T00:00:00Z' })))
  const theirs = makeCorpus(path.join(dir, 'theirs'), late.map((u) => ({ uid: u[1], size: 500, createdAt: '2024-03-02T00:00:00Z' })))
  const attempts: number[] = []
  let other: Promise<unknown> | undefined
  await runPack(asInputs(ours.rows), target, { nBits: 8 }, {
    s3Hooks: {
      async beforeComplete(_key, attempt) {
        // Once, however many of our uploads are about to complete.
        other ??= packFiles(asInputs(theirs.rows), target, { nBits: 8 })
        await other
        attempts.push(attempt)
      },
    },
  })
  t.true(attempts.includes(1), 'the keys made after the listing were redone against what is there')
  const stored = await readS3Store(client, bucket, 'l/')
  t.is(stored.size, first.rows.length + second.rows.length + ours.rows.length + theirs.rows.length)
  for (const c of [first, second, ours, theirs]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
})

test('keys are packed into S3 many at once: their uploads overlap', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'overlap')
  const dir = tempDir()
  // Well above the three keys at once of before; S3_KEYS_AT_ONCE allows more.
  const want = 8
  let inFlight = 0
  let most = 0
  let release!: () => void
  let giveUp: NodeJS.Timeout | undefined
  const together = new Promise<void>((resolve) => (release = resolve))
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'PutObjectCommand') return next(args)
      most = Math.max(most, ++inFlight)
      if (inFlight >= want) release()
      // Each upload waits until `want` are in flight together. The timer only
      // ends a wait that would otherwise never end (then the count fails the test).
      if (most === 1) giveUp = setTimeout(release, 5000)
      await together
      try {
        return await next(args)
      } finally {
        inFlight--
      }
    },
    { step: 'initialize', name: 'overlap' },
  )
  const corpus = makeCorpus(path.join(dir, 'src'), uidsByKey(2 * want, 1, '2024-03-01T12:00:00Z', 'o').flat().map((uid) => ({ uid, size: 200 })))
  await packFiles(asInputs(corpus.rows), { kind: 's3', bucket, prefix: '', client }, { nBits: 8 })
  clearTimeout(giveUp)
  t.true(most >= want, `at most ${most} uploads were in flight together`)
  const stored = await readS3Store(client, bucket)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha, uid)
})

test('the flat layout is listed by its date prefix: a second run writes each key\'s next shard without a conflict', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'listed-flat')
  const dir = tempDir()
  const keys = uidsByKey(LIST_FROM_KEYS, 2, '2024-03-01T12:00:00Z')
  const target = { kind: 's3' as const, bucket, prefix: 'f/', client }
  const runs = [0, 1].map((n) => makeCorpus(path.join(dir, `r${n}`), keys.map((u) => ({ uid: u[n], size: 400 + n }))))
  await packFiles(asInputs(runs[0].rows), target, { nBits: 8, layout: 'flat' })
  calls.length = 0
  await packFiles(asInputs(runs[1].rows), target, { nBits: 8, layout: 'flat' })
  t.is(countCalls(calls, 'ListObjectsV2Command'), 1)
  t.deepEqual(calls.filter((c) => c.status !== undefined), [], 'no missing object asked for, no conflict')
  const listed = await listKeys(client, bucket, 'f/')
  t.is(listed.filter((k) => /^f\/20240301_[0-9A-F]+_0001\.des$/.test(k)).length, keys.length, 'a new shard per key, none rewritten')
  const stored = await readS3Store(client, bucket, 'f/')
  for (const c of runs) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
})

test.serial('s3:// sources are read (with the source metrics); a missing one is refused before any upload', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'src')
  const out = await freshBucket(client, 'dst')
  const bodies = [content('text', 5000, 1), content('random', 7000, 2)]
  for (const [i, b] of bodies.entries()) await client.send(new PutObjectCommand({ Bucket: bucket, Key: `in/f${i}`, Body: b }))
  const inputs = bodies.map((b, i) => ({ uid: `s3-${i}`, createdAt: '2024-07-01T00:00:00Z', sizeBytes: b.length, source: `s3://${bucket}/in/f${i}` }))
  const okBefore = (await registry.getSingleMetric('des_s3_source_reads_total')!.get()).values.find((v) => v.labels.status === 'success')?.value ?? 0
  const res = await packFiles(inputs, { kind: 's3', bucket: out, prefix: '', client }, { sourceS3: { client } })
  t.is(res.files, 2)
  const stored = await readS3Store(client, out)
  bodies.forEach((b, i) => t.is(stored.get(`s3-${i}`)!.sha256, sha256(b)))
  const okAfter = (await registry.getSingleMetric('des_s3_source_reads_total')!.get()).values.find((v) => v.labels.status === 'success')!.value
  t.is(okAfter - okBefore, 2)
  const bytes = (await registry.getSingleMetric('des_s3_source_bytes_downloaded_total')!.get()).values[0].value
  t.true(bytes >= 12000)

  const empty = await freshBucket(client, 'dst2')
  const err = await t.throwsAsync(
    packFiles([...inputs, { uid: 'lost', createdAt: '2024-07-01T00:00:00Z', source: `s3://${bucket}/in/nothing` }], { kind: 's3', bucket: empty, prefix: '', client }, { sourceS3: { client } }),
  )
  t.is(errorCode(err), 'DES_NOT_FOUND')
  t.regex(err!.message, /uid "lost" \(input 3\): source s3:\/\/.*\/in\/nothing does not exist/)
  t.deepEqual(await listKeys(client, empty), [])
})

test('appending to a v1 shard on S3 rewrites it whole as v2, keeping its entries', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'v1')
  const v1 = goldenShards().find((g) => g.expect.version === 1 && g.expect.entries.every((e) => !e.is_bigfile))
  if (!v1) return t.fail('the golden vectors hold a v1 shard (v1 has no BigFiles)')
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: '20240301/3.des', Body: fs.readFileSync(v1.file) }))
  const dir = tempDir()
  const fresh = makeCorpus(path.join(dir, 'a'), sameShard(3, 3, 5000).map((uid) => ({ uid, size: 1234 })))
  await packFiles(asInputs(fresh.rows), { kind: 's3', bucket, prefix: '', client }, { nBits: 4 })
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: '20240301/3.des', Range: 'bytes=0-7' }))
  const header = Buffer.from(await res.Body!.transformToByteArray())
  t.is(header[4], 2, 'now a v2 shard')
  const stored = await readS3Store(client, bucket)
  for (const e of v1.expect.entries) t.is(stored.get(e.uid)!.sha256, e.sha256, e.uid)
  for (const [uid, sha] of fresh.shas) t.is(stored.get(uid)!.sha256, sha)
})

test('an append to a shard whose header is damaged is refused as on a local disk, not carried into a new object', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'badheader')
  const dir = tempDir()
  const uids = sameShard(6, 5)
  // Over the 64 KiB tail the packer reads, so the header is not in it.
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 3).map((uid) => ({ uid, kind: 'random' as const, size: 40_000 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  const key = '20240301/5.des'
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  const damaged = Buffer.from(await res.Body!.transformToByteArray())
  damaged[0] ^= 0xff
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: damaged }))
  const etag = (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ETag
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(3).map((uid) => ({ uid, size: 2000 })))
  const err = await t.throwsAsync(packFiles(asInputs(b.rows), target, { nBits: 4 }))
  t.is(errorCode(err), 'DES_CORRUPT')
  t.regex(err!.message, /header magic/)
  t.is((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ETag, etag, 'the damaged object is left as it was')
})

test('des pack --s3-bucket uploads with endpoint from DES_S3_ENDPOINT_URL; a missing bucket is a clear error', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'cli')
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'a'), [
    { uid: 'one', size: 1000 },
    { uid: 'two', kind: 'json', size: 2000 },
  ])
  const env = { DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_S3_REGION: 'us-east-1' }
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--s3-bucket', bucket, '--s3-prefix', 'x/y', '--json'], { env })
  t.is(r.code, 0, r.stderr)
  t.is(JSON.parse(r.stdout.toString()).files, 2)
  const stored = await readS3Store(client, bucket, 'x/y/')
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha)
  const missing = await runCli(['pack', '--input-json', corpus.manifestPath, '--s3-bucket', `${bucket}-missing`], { env })
  t.is(missing.code, 3, missing.stderr)
  t.regex(missing.stderr, /des: bucket .*-missing does not exist/)
})

test('des pack with neither --output-dir nor --s3-bucket packs into the bucket and prefix des serve reads (DES_BACKEND=s3, DES_S3_BUCKET, DES_S3_PREFIX)', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'cli-env')
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'a'), [
    { uid: 'one', size: 1000 },
    { uid: 'two', kind: 'json', size: 2000 },
  ])
  const env = { DES_BACKEND: 's3', DES_S3_BUCKET: bucket, DES_S3_PREFIX: 'des/', DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_S3_REGION: 'us-east-1' }
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--json'], { env })
  t.is(r.code, 0, r.stderr)
  t.is(JSON.parse(r.stdout.toString()).target, `s3://${bucket}/des/`)
  const stored = await readS3Store(client, bucket, 'des/')
  t.is(stored.size, 2)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha)
  // The store of this environment (the one des serve reads) holds both files and checks out.
  const scrub = await runCli(['verify', '--store', '--json'], { env })
  t.is(scrub.code, 0, scrub.stderr)
  const summary = JSON.parse(scrub.stdout.toString().trim().split('\n').pop()!).summary
  t.like(summary, { entries: 2, problems: 0 })
  // --s3-prefix goes with the environment's bucket; DES_S3_BUCKET with DES_BACKEND=local is not taken.
  const other = await runCli(['pack', '--input-json', corpus.manifestPath, '--s3-prefix', 'other/', '--json'], { env })
  t.is(other.code, 0, other.stderr)
  t.is(JSON.parse(other.stdout.toString()).target, `s3://${bucket}/other/`)
  const local = await runCli(['pack', '--input-json', corpus.manifestPath], { env: { ...env, DES_BACKEND: 'local' } })
  t.is(local.code, 2, local.stderr)
  t.regex(local.stderr, /give exactly one of --output-dir DIR or --s3-bucket BUCKET \(or neither, with DES_BACKEND=s3 and DES_S3_BUCKET/)
})

test('a large append to an object under 5 MiB: the old bytes lead the first uploaded part', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'lead')
  const dir = tempDir()
  const uids = sameShard(22, 13)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 4).map((uid) => ({ uid, kind: 'random' as const, size: 250_000 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  calls.length = 0
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(4).map((uid) => ({ uid, kind: 'random' as const, size: 1_000_000 })))
  await packFiles(asInputs(b.rows), target, { nBits: 4 })
  const names = calls.map((c) => c.name)
  t.false(names.includes('UploadPartCopyCommand'))
  t.true(names.filter((n) => n === 'UploadPartCommand').length >= 2, names.join(','))
  t.true(names.includes('CompleteMultipartUploadCommand'))
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 22)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
  t.true(await noUploadsLeft(client, bucket))
})

test.serial('a source read that fails with 503 is retried with backoff and counted', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'retry')
  const body = content('json', 4000, 9)
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'src/one', Body: body }))
  // The source client's GETs fail twice with a 503 before the real answer
  // (below the SDK's retry step, as a server's answer would).
  const env = s3TestEnv()
  const flaky = createS3Client({ region: env.region, endpoint: env.endpoint, forcePathStyle: true }, { maxAttempts: 4, retryDelayMs: 5 })
  let failures = 2
  flaky.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'GetObjectCommand' && failures > 0) {
        failures--
        throw Object.assign(new Error('SlowDown'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } })
      }
      return next(args)
    },
    { step: 'deserialize', name: 'flaky' },
  )
  const retries = async () => (await registry.getSingleMetric('des_s3_source_reads_total')!.get()).values.find((v) => v.labels.status === 'retry')?.value ?? 0
  const before = await retries()
  const dir = tempDir()
  const res = await packFiles([{ uid: 'one', createdAt: '2024-07-02T00:00:00Z', source: `s3://${bucket}/src/one` }], { kind: 'local', dir }, { sourceS3: { client: flaky } })
  t.is(res.files, 1)
  t.is((await retries()) - before, 2)
  failures = 10
  const err = await t.throwsAsync(packFiles([{ uid: 'two', createdAt: '2024-07-02T00:00:00Z', source: `s3://${bucket}/src/one` }], { kind: 'local', dir }, { sourceS3: { client: flaky } }))
  t.is(errorCode(err), 'DES_UNAVAILABLE')
  t.regex(err!.message, /uid "two" \(input 1\)/)
  t.is(failures, 6, "the client's 4 attempts, no retry loop on top of them")
})

test('two des pack processes appending to the same S3 keys at once: every file of both is there', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'procs')
  const dir = tempDir()
  const specs = (from: number) => [0, 6].flatMap((shard) => sameShard(10, shard, from).map((uid) => ({ uid, size: 1500 + (Number(uid) % 300) })))
  const base = makeCorpus(path.join(dir, 'base'), specs(0))
  const a = makeCorpus(path.join(dir, 'a'), specs(100))
  const b = makeCorpus(path.join(dir, 'b'), specs(200))
  const env = { DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_S3_REGION: 'us-east-1' }
  const args = (m: string) => ['pack', '--input-json', m, '--s3-bucket', bucket, '--n-bits', '4', '--json']
  const first = await runCli(args(base.manifestPath), { env })
  t.is(first.code, 0, first.stderr)
  const [ra, rb] = await Promise.all([runCli(args(a.manifestPath), { env }), runCli(args(b.manifestPath), { env })])
  t.is(ra.code, 0, ra.stderr)
  t.is(rb.code, 0, rb.stderr)
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 60)
  for (const c of [base, a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)?.sha256, sha, uid)
})

/**
 * A proxy to MinIO that holds every request uploading a part of a multipart
 * upload (never forwarded): a packer sending one is mid-upload for as long as
 * the test wants. `held` resolves at the first one.
 */
async function partHoldingProxy(): Promise<{ endpoint: string; held: Promise<void>; close: () => void }> {
  const upstream = new URL(s3TestEnv().endpoint)
  const holding: http.ServerResponse[] = []
  let firstHeld!: () => void
  const held = new Promise<void>((resolve) => (firstHeld = resolve))
  const server = http.createServer((req, res) => {
    if (req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '')) {
      holding.push(res)
      firstHeld()
      return
    }
    const out = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    out.on('error', () => res.destroy())
    req.pipe(out)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    held,
    close: () => {
      for (const res of holding) res.destroy()
      server.close()
    },
  }
}

test('des pack stopped by SIGTERM during a multipart append aborts its upload, removes its temp folder and exits 143; the shard stays the old one', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'sigterm')
  const dir = tempDir()
  const tmp = tempDir('des-pack-tmpdir-')
  const base = makeCorpus(path.join(dir, 'base'), sameShard(3, 1).map((uid) => ({ uid, kind: 'random' as const, size: 2 * 1024 * 1024 })))
  // 48 MiB more: the old 6 MiB copied server-side, the new tail in 16 MiB parts.
  const next = makeCorpus(path.join(dir, 'next'), sameShard(12, 1, 100).map((uid) => ({ uid, kind: 'random' as const, size: 4 * 1024 * 1024 })))
  const env = { DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_S3_REGION: 'us-east-1', TMPDIR: tmp }
  const args = (m: string, ...more: string[]) => ['pack', '--input-json', m, '--s3-bucket', bucket, '--n-bits', '4', '--json', ...more]
  t.is((await runCli(args(base.manifestPath), { env })).code, 0)
  // The append goes through a proxy that holds its parts: it is under way until the signal.
  const proxy = await partHoldingProxy()
  t.teardown(proxy.close)
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'des.js'), ...args(next.manifestPath)], { env: { ...process.env, ...env, DES_S3_ENDPOINT_URL: proxy.endpoint } })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  await proxy.held
  t.false(await noUploadsLeft(client, bucket), 'the upload is under way')
  child.kill('SIGTERM')
  const { code, signal } = await exited
  t.is(code, 143, `signal ${signal}: ${stderr}`)
  t.regex(stderr, /stopped by SIGTERM: aborts sent for 1 multipart upload\(s\) under way, \d+ temp folder\(s\) removed/)
  t.true(await noUploadsLeft(client, bucket), 'no uploaded parts left in the bucket')
  t.deepEqual(fs.readdirSync(tmp), [], 'no temp folder left in TMPDIR')
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 3, 'the old shard, its files all there')
  for (const [uid, sha] of base.shas) t.is(stored.get(uid)?.sha256, sha, uid)
  const rerun = await runCli(args(next.manifestPath, '--skip-existing'), { env })
  t.is(rerun.code, 0, rerun.stderr)
  const after = await readS3Store(client, bucket)
  t.is(after.size, 15)
  for (const c of [base, next]) for (const [uid, sha] of c.shas) t.is(after.get(uid)?.sha256, sha, uid)
})

test('an index larger than the first tail read costs one more ranged GET, and the append still works', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'bigindex')
  const dir = tempDir()
  const uids = sameShard(7200, 8)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 7000).map((uid) => ({ uid, size: 8 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(7000).map((uid) => ({ uid, size: 8 })))
  calls.length = 0
  await packFiles(asInputs(b.rows), target, { nBits: 4 })
  // Tail reads: the pre-check of part 0 (and of part 1: none), the part's own, the read-back;
  // each found index gets one more GET of the missing range.
  const gets = calls.filter((c) => c.name === 'GetObjectCommand')
  t.is(gets.filter((c) => c.range === `bytes=-${64 * 1024}`).length, 4, 'tails of DES_TAIL_BYTES, as the store reads them')
  t.is(gets.filter((c) => /^bytes=[1-9]\d*-\d+$/.test(c.range ?? '')).length, 3, JSON.stringify(gets))
  const stored = await readS3Store(client, bucket)
  t.is(stored.size, 7200)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha)
})

test('the packer reads tails of the size it is given (DES_TAIL_BYTES): one large enough needs no second GET', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'tailsize')
  const dir = tempDir()
  const uids = sameShard(7200, 8)
  const a = makeCorpus(path.join(dir, 'a'), uids.slice(0, 7000).map((uid) => ({ uid, size: 8 })))
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(a.rows), target, { nBits: 4 })
  const b = makeCorpus(path.join(dir, 'b'), uids.slice(7000).map((uid) => ({ uid, size: 8 })))
  calls.length = 0
  await packFiles(asInputs(b.rows), target, { nBits: 4, tailBytes: 1024 * 1024 })
  const gets = calls.filter((c) => c.name === 'GetObjectCommand')
  t.is(gets.filter((c) => c.range === 'bytes=-1048576').length, 4)
  t.is(gets.filter((c) => /^bytes=[1-9]\d*-\d+$/.test(c.range ?? '')).length, 0, JSON.stringify(gets))
})

test('a BigFile already in the bucket with the same bytes is not uploaded again; one of the same size but other bytes is written over', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'bigdedup')
  const dir = tempDir()
  // One BigFile put whole, one in parts (over 16 MiB): the ETag proves both.
  const a = makeCorpus(path.join(dir, 'a'), [
    { uid: 'one.bin', kind: 'random', size: 150_000 },
    { uid: 'huge.bin', kind: 'random', size: 17 * 1024 * 1024 + 5 },
  ])
  const copies = a.rows.map((r) => {
    const copy = path.join(dir, `copy-${r.uid}`)
    fs.copyFileSync(r.source_path, copy)
    return copy
  })
  const target = { kind: 's3' as const, bucket, prefix: '', client }
  await packFiles(asInputs(a.rows), target, { bigFileThreshold: 100_000 })
  const bigKey = (uid: string) => `20240301/_bigFiles/${a.shas.get(uid)}`
  calls.length = 0
  const again = (uid: string, n: number) => ({ uid: `${uid}-${n}`, createdAt: '2024-03-01T05:00:00Z', source: copies[a.rows.findIndex((r) => r.uid === uid)] })
  await packFiles([again('one.bin', 2), again('huge.bin', 2)], target, { bigFileThreshold: 100_000 })
  const bigWrites = () => calls.filter((c) => /_bigFiles/.test(c.key ?? '') && /Put|Multipart|UploadPart/.test(c.name))
  t.is(calls.filter((c) => c.name === 'HeadObjectCommand').length, 2, 'each BigFile looked at')
  t.deepEqual(bigWrites(), [], 'neither BigFile is uploaded again, the parted one included')
  t.deepEqual(await listKeys(client, bucket, '20240301/_bigFiles/'), [bigKey('huge.bin'), bigKey('one.bin')].sort())

  // The object is damaged in place (same size): the next file with those bytes puts it again.
  const damaged = Buffer.from(fs.readFileSync(copies[0]))
  damaged[100] ^= 0x01
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: bigKey('one.bin'), Body: damaged }))
  calls.length = 0
  await packFiles([again('one.bin', 3)], target, { bigFileThreshold: 100_000 })
  t.deepEqual(bigWrites().map((c) => [c.name, c.key]), [['PutObjectCommand', bigKey('one.bin')]], 'the BigFile is put again')
  const stored = await readS3Store(client, bucket)
  for (const uid of ['one.bin', 'one.bin-2', 'one.bin-3']) t.is(stored.get(uid)!.sha256, a.shas.get('one.bin'), uid)
  for (const uid of ['huge.bin', 'huge.bin-2']) t.is(stored.get(uid)!.sha256, a.shas.get('huge.bin'), uid)
})

test('a prefix with a leading slash is sent as configured (the original\'s keys); MinIO, which stores it without the slash, packs, reads and lists it as any other', async (t) => {
  const { client, calls } = recordingClient()
  const bucket = await freshBucket(client, 'slash')
  const corpus = makeCorpus(path.join(tempDir(), 'src'), [
    { uid: 'a.txt', size: 3000, createdAt: '2024-06-01T00:00:00Z' },
    { uid: 'big.bin', kind: 'random', size: 200_000, createdAt: '2024-06-01T00:00:00Z' },
  ])
  await packFiles(asInputs(corpus.rows), { kind: 's3', bucket, prefix: '/archive', client }, { bigFileThreshold: 100_000 })
  const keyed = calls.filter((c) => c.key !== undefined)
  t.true(keyed.length > 0)
  t.true(keyed.every((c) => c.key!.startsWith('/archive/2024')), keyed.map((c) => c.key).join(', '))
  t.true(keyed.some((c) => c.key === `/archive/20240601/_bigFiles/${corpus.shas.get('big.bin')}`))
  // MinIO cleaned the slash away: the objects are at archive/.
  t.true((await listKeys(client, bucket, 'archive/')).length >= 2)

  const source = new S3Source(client, { bucket, prefix: '/archive/' })
  const store = new Store({ sources: singleSource(source), nBits: 8 })
  for (const r of corpus.rows) t.is(sha256(await store.get(r.uid, r.created_at)), corpus.shas.get(r.uid), r.uid)
  const listed: string[] = []
  for await (const o of source.list()) listed.push(o.key)
  t.deepEqual(listed.sort(), [...new Set([...corpus.rows.map((r) => locateShard(r.uid, r.created_at).objectKey), `20240601/_bigFiles/${corpus.shas.get('big.bin')}`])].sort())
})
