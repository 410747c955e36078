// `des pack --worker I/N`: N processes over one manifest write disjoint keys
// (shard index mod N) and together store exactly what one process stores, on
// local disk and on the real MinIO; the worker's index and count come from
// flags or, in an Indexed Job, from JOB_COMPLETION_INDEX and DES_PACK_WORKERS.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { packWorker } from '../src/config/pack'
import { errorCode } from '../src/errors'
import { locateShard } from '../src/native'
import { runCli } from './helpers/cli'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { makeCorpus, readLocalStore, readS3Store, shardFiles, tempDir, type Corpus, type StoredFile } from './helpers/pack'

test('the worker slice comes from --worker I/N, or the Indexed Job index with the count from --workers or DES_PACK_WORKERS', (t) => {
  t.is(packWorker({}, {}), undefined, 'no worker: every key')
  t.deepEqual(packWorker({ worker: '2/3' }, {}), { index: 2, count: 3 })
  t.deepEqual(packWorker({ worker: '1' }, { DES_PACK_WORKERS: '4' }), { index: 1, count: 4 })
  t.deepEqual(packWorker({ worker: '1', workers: 2 }, {}), { index: 1, count: 2 })
  t.deepEqual(packWorker({}, { JOB_COMPLETION_INDEX: '3', DES_PACK_WORKERS: '8' }), { index: 3, count: 8 })
  t.deepEqual(packWorker({ workers: 8 }, { JOB_COMPLETION_INDEX: '0' }), { index: 0, count: 8 })
  t.deepEqual(packWorker({ worker: '0/2' }, { JOB_COMPLETION_INDEX: '5', DES_PACK_WORKERS: '2' }), { index: 0, count: 2 }, 'the flag wins over the Job index')
  const refused: Array<[Parameters<typeof packWorker>[0], Record<string, string>, string, RegExp]> = [
    [{ worker: '3/3' }, {}, 'DES_BAD_ARG', /index must be below the worker count/],
    [{ worker: 'a/b' }, {}, 'DES_BAD_ARG', /--worker: expected I\/N/],
    [{ worker: '1' }, {}, 'DES_BAD_ARG', /give the worker count too/],
    [{ worker: '1/4' }, { DES_PACK_WORKERS: '3' }, 'DES_BAD_ARG', /says 4 workers, but --workers \/ DES_PACK_WORKERS says 3/],
    [{ worker: '0/0' }, {}, 'DES_BAD_ARG', /worker count must be 1\.\./],
    [{ workers: 0 }, {}, 'DES_BAD_ARG', /--workers must be a whole number/],
    [{}, { DES_PACK_WORKERS: '4' }, 'DES_BAD_ARG', /not which one this is/],
    [{}, { JOB_COMPLETION_INDEX: '2' }, 'DES_CONFIG', /JOB_COMPLETION_INDEX=2 is set .* set DES_PACK_WORKERS/],
    [{}, { JOB_COMPLETION_INDEX: '4', DES_PACK_WORKERS: '4' }, 'DES_BAD_ARG', /worker 4 of 4/],
    [{}, { DES_PACK_WORKERS: 'many', JOB_COMPLETION_INDEX: '0' }, 'DES_CONFIG', /DES_PACK_WORKERS="many" is invalid/],
  ]
  for (const [flags, env, code, message] of refused) {
    const err = t.throws(() => packWorker(flags, env), undefined, JSON.stringify({ flags, env }))
    t.is(errorCode(err), code, JSON.stringify({ flags, env }))
    t.regex(err!.message, message)
  }
})

/** 300 files over two days and all 16 shards of n_bits 4; small parts, so keys continue in .1.des, .2.des. */
function corpus(dir: string): Corpus {
  return makeCorpus(
    path.join(dir, 'src'),
    Array.from({ length: 300 }, (_, i) => ({
      uid: `w${i}`,
      kind: i % 3 === 0 ? ('random' as const) : ('text' as const),
      size: 1500 + ((i * 53) % 2500),
      createdAt: i % 2 ? '2024-05-01T08:00:00Z' : '2024-05-02T20:00:00Z',
    })),
  )
}

const PACK_FLAGS = ['--n-bits', '4', '--max-shard-size', '20000', '--json']

/** Stored object key → its uids in index order, and uid → sha256 of its bytes. */
function contents(stored: Map<string, StoredFile>): { keys: Record<string, string[]>; shas: Record<string, string> } {
  const keys: Record<string, string[]> = {}
  const shas: Record<string, string> = {}
  for (const [uid, f] of stored) {
    ;(keys[f.key] ??= []).push(uid)
    shas[uid] = f.sha256
  }
  return { keys, shas }
}

/** Runs one process and three workers (two by flag, one as an Indexed Job pod would); checks each worker's keys. */
async function oneAndThree(t: import('ava').ExecutionContext, c: Corpus, target: (name: string) => string[], env: NodeJS.ProcessEnv = {}) {
  const one = await runCli(['pack', '--input-json', c.manifestPath, ...target('one'), ...PACK_FLAGS], { env })
  t.is(one.code, 0, one.stderr)
  const runs = await Promise.all([
    runCli(['pack', '--input-json', c.manifestPath, ...target('three'), ...PACK_FLAGS, '--worker', '0/3'], { env }),
    runCli(['pack', '--input-json', c.manifestPath, ...target('three'), ...PACK_FLAGS, '--worker', '1', '--workers', '3'], { env }),
    runCli(['pack', '--input-json', c.manifestPath, ...target('three'), ...PACK_FLAGS], { env: { ...env, JOB_COMPLETION_INDEX: '2', DES_PACK_WORKERS: '3' } }),
  ])
  const summaries = runs.map((r, i) => {
    t.is(r.code, 0, `worker ${i}: ${r.stderr}`)
    return JSON.parse(r.stdout.toString()) as { worker: string; files: number; keys: Array<{ key: string }> }
  })
  summaries.forEach((s, i) => {
    t.is(s.worker, `${i}/3`)
    t.true(s.files > 0, `worker ${i} had keys`)
    // Keys of worker i: shard index mod 3 = i (the key's name is <date>/<HEX>[.<part>].des).
    for (const k of s.keys) t.is(parseInt(/\/([0-9A-F]+)(\.\d+)?\.des$/.exec(k.key)![1], 16) % 3, i, k.key)
  })
  t.is(
    summaries.reduce((s, x) => s + x.files, 0),
    c.rows.length,
    'every uid packed once across the workers',
  )
  const all = summaries.flatMap((s) => s.keys.map((k) => k.key))
  t.is(new Set(all).size, all.length, 'no key written by two workers')
  t.deepEqual(all.sort(), (JSON.parse(one.stdout.toString()).keys as Array<{ key: string }>).map((k) => k.key).sort())
}

test('three des pack --worker processes over one manifest store exactly what one process stores (local)', async (t) => {
  const dir = tempDir()
  const c = corpus(dir)
  await oneAndThree(t, c, (name) => ['--output-dir', path.join(dir, name)])
  const one = contents(await readLocalStore(path.join(dir, 'one')))
  const three = contents(await readLocalStore(path.join(dir, 'three')))
  t.deepEqual(shardFiles(path.join(dir, 'three')), shardFiles(path.join(dir, 'one')))
  t.true(shardFiles(path.join(dir, 'one')).some((k) => /\.\d+\.des$/.test(k)), 'keys continue in further parts')
  t.deepEqual(three.keys, one.keys, 'same keys, same uids in the same order in each')
  t.deepEqual(three.shas, one.shas)
  for (const [uid, sha] of c.shas) t.is(three.shas[uid], sha, uid)
  // Spot-check the routing of the result: every uid sits under its own key.
  for (const r of c.rows) t.true(Object.entries(three.keys).some(([k, uids]) => uids.includes(r.uid) && k.startsWith(locateShard(r.uid, r.created_at, 4).objectKey.replace(/\.des$/, ''))), r.uid)
})

test('three des pack --worker processes over one manifest store exactly what one process stores (MinIO)', async (t) => {
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'pack-one'), await freshBucket(client, 'pack-three')]
  const dir = tempDir()
  const c = corpus(dir)
  const env = { DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_S3_REGION: s3TestEnv().region }
  await oneAndThree(t, c, (name) => ['--s3-bucket', name === 'one' ? a : b, '--s3-prefix', 'store/'], env)
  const one = contents(await readS3Store(client, a, 'store/'))
  const three = contents(await readS3Store(client, b, 'store/'))
  t.true(Object.keys(one.keys).some((k) => /\.\d+\.des$/.test(k)), 'keys continue in further parts')
  t.deepEqual(three.keys, one.keys, 'same keys, same uids in the same order in each')
  t.deepEqual(three.shas, one.shas)
  for (const [uid, sha] of c.shas) t.is(three.shas[uid], sha, uid)
})

test('a worker checks the whole manifest: a bad entry in another worker\'s keys stops every worker before it writes', async (t) => {
  const dir = tempDir()
  const c = makeCorpus(path.join(dir, 'src'), [
    { uid: '1', size: 100 },
    { uid: '2', size: 100 },
    { uid: '3', size: 100, createdAt: 'not a date' },
  ])
  // uid 3 routes elsewhere; its date is checked by every worker all the same.
  for (const w of ['0/3', '1/3', '2/3']) {
    const out = path.join(dir, `out-${w.replace('/', '-')}`)
    const r = await runCli(['pack', '--input-json', c.manifestPath, '--output-dir', out, '--n-bits', '4', '--worker', w])
    t.is(r.code, 2, `${w}: ${r.stderr}`)
    t.regex(r.stderr, /uid "3" \(line \d+, entry \d+\): created_at "not a date"/)
    t.deepEqual(shardFiles(out), [], `${w}: nothing written`)
  }
})

test('a source no path or key can be (a malformed s3:// URL, a NUL) in another worker\'s keys stops every worker before it writes, as it stops one process', async (t) => {
  const dir = tempDir()
  const c = makeCorpus(path.join(dir, 'src'), [
    { uid: '1', size: 100 },
    { uid: '2', size: 100 },
    { uid: '3', size: 100 },
    { uid: '4', size: 100 },
  ])
  const cases: Array<[string, RegExp]> = [
    ['s3://only-a-bucket', /uid "4" \(line \d+, entry \d+\): source s3:\/\/only-a-bucket is not s3:\/\/bucket\/key/],
    ['s3://', /uid "4" \(line \d+, entry \d+\): source s3:\/\/ is not s3:\/\/bucket\/key/],
    ['/tmp/a\u0000b', /uid "4" \(line \d+, entry \d+\): source holds a NUL character/],
  ]
  for (const [source, message] of cases) {
    const manifest = path.join(dir, 'manifest.json')
    fs.writeFileSync(manifest, JSON.stringify(c.rows.map((r) => (r.uid === '4' ? { ...r, source_path: source } : r))))
    for (const w of [[], ['--worker', '0/2'], ['--worker', '1/2']]) {
      const out = path.join(dir, `out-${w.join('')}`)
      const r = await runCli(['pack', '--input-json', manifest, '--output-dir', out, '--n-bits', '4', ...w])
      t.is(r.code, 2, `${JSON.stringify(source)} ${w.join(' ')}: ${r.stderr}`)
      t.regex(r.stderr, message)
      t.deepEqual(shardFiles(out), [], `${JSON.stringify(source)} ${w.join(' ')}: nothing written`)
    }
  }
})

test('a manifest with an s3:// source: every worker checks the S3 source settings, as one process does, not only the worker that reads it', async (t) => {
  const dir = tempDir()
  const c = makeCorpus(path.join(dir, 'src'), [
    { uid: '1', size: 100 },
    { uid: '2', size: 100 },
    { uid: '3', size: 100 },
  ])
  const manifest = path.join(dir, 'manifest.json')
  fs.writeFileSync(manifest, JSON.stringify([...c.rows, { uid: '4', created_at: '2024-03-01T12:00:00Z', source_path: 's3://sources/some/key', size_bytes: 10 }]))
  const indexes = ['1', '2', '3', '4'].map((uid) => locateShard(uid, '2024-03-01T12:00:00Z', 4).shardIndex % 2)
  t.true(indexes.slice(0, 3).some((w) => w !== indexes[3]), 'a worker has local sources only')
  for (const w of [[], ['--worker', '0/2'], ['--worker', '1/2']]) {
    const out = path.join(dir, `out-${w.join('')}`)
    const r = await runCli(['pack', '--input-json', manifest, '--output-dir', out, '--n-bits', '4', ...w], { env: { DES_S3_ENDPOINT_URL: 'not-a-url' } })
    t.is(r.code, 2, `${w.join(' ')}: ${r.stderr}`)
    t.regex(r.stderr, /DES_S3_ENDPOINT_URL="not-a-url" is invalid/)
    t.deepEqual(shardFiles(out), [], `${w.join(' ')}: nothing written`)
  }
})
