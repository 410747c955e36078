// packFiles into a local store: layout, BigFiles, codecs, appending,
// continuations and bad inputs. Shards are read back with ShardReader and
// compared by sha256 with the sources.

import test from 'ava'
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { packFiles, parseManifest, runPack, type PackInput } from '../src/pack'
import { locateShard, ShardReader, ShardWriter, StagedGroup, verifyShardFile } from '../src/native'
import { errorCode } from '../src/errors'
import { asInputs, cachedBytes, makeCorpus, noCacheView, readLocalStore, shardFiles, tempDir } from './helpers/pack'
import { foldersNaming, LocalTarget } from '../src/pack/local-target'
import { locateLine } from '../src/cli/commands/locate'
import type { PlannedInput } from '../src/pack/plan'

/** Numeric uids that all route to shard `shard` with n_bits 4: 16k + shard. */
function sameShardUids(n: number, shard = 3, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => String(16 * (from + i) + shard))
}

test('files land in <date>/<HEX>.des by their routing, and read back byte-exact', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'a.txt', size: 5000, createdAt: '2024-03-01T10:00:00Z' },
    { uid: 'b.json', kind: 'json', size: 20000, createdAt: '2024-03-01T23:59:59Z', meta: { mime: 'application/json' } },
    { uid: '12345', kind: 'random', size: 3000, createdAt: '2024-03-02T00:00:00+00:00' },
    { uid: 'c.txt', size: 0, createdAt: '2024-03-02T05:00:00' },
  ])
  const out = path.join(dir, 'out')
  const res = await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out })
  t.is(res.files, 4)
  t.is(res.skipped, 0)
  const expectedKeys = [...new Set(corpus.rows.map((r) => locateShard(r.uid, r.created_at).objectKey))]
  t.deepEqual(shardFiles(out), [...expectedKeys].sort())
  t.deepEqual(res.shards.map((s) => s.key), expectedKeys, 'in manifest order')
  t.is(res.bytesIn, corpus.rows.reduce((s, r) => s + r.size_bytes, 0))
  const stored = await readLocalStore(out)
  for (const r of corpus.rows) {
    const got = stored.get(r.uid)!
    t.is(got.sha256, corpus.shas.get(r.uid), r.uid)
    t.is(got.key, locateShard(r.uid, r.created_at).objectKey)
  }
  t.deepEqual(stored.get('b.json')!.meta, { mime: 'application/json' })
  t.is(stored.get('b.json')!.codec, 'zstd')
  // Incompressible bytes are stored raw.
  t.is(stored.get('12345')!.codec, 'none')
})

test('payloads over the BigFile threshold go to <date>/_bigFiles/<sha256>, deduplicated', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'big1.bin', kind: 'random', size: 300_000 },
    { uid: 'small.txt', size: 1000 },
  ])
  // The same bytes under another uid: one BigFile object.
  const copy = path.join(dir, 'src', 'copy.bin')
  fs.copyFileSync(corpus.rows[0].source_path, copy)
  const inputs: PackInput[] = [...asInputs(corpus.rows), { uid: 'big2.bin', createdAt: '2024-03-01T00:00:00Z', source: copy, sizeBytes: 300_000 }]
  const out = path.join(dir, 'out')
  await packFiles(inputs, { kind: 'local', dir: out }, { bigFileThreshold: 100_000 })
  const bigDir = path.join(out, '20240301', '_bigFiles')
  t.deepEqual(fs.readdirSync(bigDir), [corpus.shas.get('big1.bin')])
  const stored = await readLocalStore(out)
  t.true(stored.get('big1.bin')!.isBigfile)
  t.true(stored.get('big2.bin')!.isBigfile)
  t.false(stored.get('small.txt')!.isBigfile)
  t.is(stored.get('big2.bin')!.sha256, corpus.shas.get('big1.bin'))
  // No shard holds the big bytes inline.
  for (const f of shardFiles(out)) t.true(fs.statSync(path.join(out, f)).size < 100_000)
})

test('codecs and levels: zstd, lz4, none; higher zstd level stores no more; .jpg and custom extensions stay raw', async (t) => {
  const dir = tempDir()
  const specs = [
    { uid: 'log.txt', kind: 'text' as const, size: 200_000 },
    { uid: 'data.json', kind: 'json' as const, size: 200_000 },
    { uid: 'photo.JPG', kind: 'text' as const, size: 50_000 },
    { uid: 'notes.custom', kind: 'text' as const, size: 50_000 },
  ]
  const corpus = makeCorpus(path.join(dir, 'src'), specs)
  const inputs = asInputs(corpus.rows)
  const results: Record<string, number> = {}
  for (const [name, opts] of Object.entries({
    zstd3: { codec: 'zstd' as const },
    zstd19: { codec: 'zstd' as const, level: 19 },
    lz4: { codec: 'lz4' as const },
    none: { codec: 'none' as const },
  })) {
    const out = path.join(dir, name)
    const res = await packFiles(inputs, { kind: 'local', dir: out }, opts)
    results[name] = res.bytesStored
    const stored = await readLocalStore(out)
    for (const r of corpus.rows) t.is(stored.get(r.uid)!.sha256, corpus.shas.get(r.uid), `${name} ${r.uid}`)
    const want = opts.codec
    t.is(stored.get('log.txt')!.codec, want, name)
    t.is(stored.get('data.json')!.codec, want, name)
    t.is(stored.get('photo.JPG')!.codec, 'none', `${name}: .jpg is stored raw`)
  }
  t.is(results.none, corpus.rows.reduce((s, r) => s + r.size_bytes, 0))
  t.true(results.zstd3 < results.lz4, `zstd ${results.zstd3} < lz4 ${results.lz4}`)
  t.true(results.lz4 < results.none)
  t.true(results.zstd19 <= results.zstd3)

  const custom = path.join(dir, 'custom')
  await packFiles(inputs, { kind: 'local', dir: custom }, { skipExtensions: ['.custom'] })
  const stored = await readLocalStore(custom)
  t.is(stored.get('notes.custom')!.codec, 'none')
  t.is(stored.get('photo.JPG')!.codec, 'zstd', 'a custom list replaces the default one')
})

test('a second run into the same keys adds to the shards: old and new entries all present', async (t) => {
  const dir = tempDir()
  const uids = sameShardUids(20)
  const first = makeCorpus(path.join(dir, 'a'), uids.slice(0, 10).map((uid) => ({ uid, size: 2000 })))
  const second = makeCorpus(path.join(dir, 'b'), uids.slice(10).map((uid) => ({ uid, kind: 'json' as const, size: 3000 })))
  const out = path.join(dir, 'out')
  await packFiles(asInputs(first.rows), { kind: 'local', dir: out }, { nBits: 4 })
  t.deepEqual(shardFiles(out), ['20240301/3.des'])
  const res = await packFiles(asInputs(second.rows), { kind: 'local', dir: out }, { nBits: 4 })
  t.is(res.files, 10)
  t.deepEqual(res.shards.map((s) => s.key), ['20240301/3.des'])
  t.deepEqual(shardFiles(out), ['20240301/3.des'])
  const stored = await readLocalStore(out)
  t.is(stored.size, 20)
  for (const c of [first, second]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)!.sha256, sha, uid)
})

test('a uid already stored is refused (nothing changes), replaced with replace, skipped with skipExisting', async (t) => {
  const dir = tempDir()
  const a = makeCorpus(path.join(dir, 'a'), [
    { uid: 'x.txt', size: 1000 },
    { uid: 'y.txt', size: 1000 },
  ])
  const b = makeCorpus(path.join(dir, 'b'), [
    { uid: 'x.txt', kind: 'json', size: 1500 },
    { uid: 'z.txt', size: 700 },
  ])
  const out = path.join(dir, 'out')
  await packFiles(asInputs(a.rows), { kind: 'local', dir: out })
  const before = new Map(shardFiles(out).map((f) => [f, fs.readFileSync(path.join(out, f))]))

  const err = await t.throwsAsync(packFiles(asInputs(b.rows), { kind: 'local', dir: out }))
  t.is(errorCode(err), 'DES_DUPLICATE')
  t.regex(err!.message, /uid "x\.txt" \(input 1\) is already in its shard/)
  for (const [f, bytes] of before) t.deepEqual(fs.readFileSync(path.join(out, f)), bytes, `${f} untouched`)
  t.false((await readLocalStore(out)).has('z.txt'), 'nothing of the refused run was written')

  const skipped = await packFiles(asInputs(a.rows), { kind: 'local', dir: out }, { skipExisting: true })
  t.is(skipped.skipped, 2)
  t.is(skipped.files, 0)
  const sizeDiffers = await t.throwsAsync(packFiles(asInputs(b.rows), { kind: 'local', dir: out }, { skipExisting: true }))
  t.is(errorCode(sizeDiffers), 'DES_DUPLICATE')

  const res = await packFiles(asInputs(b.rows), { kind: 'local', dir: out }, { replace: true })
  t.is(res.files, 2)
  const stored = await readLocalStore(out)
  t.is(stored.get('x.txt')!.sha256, b.shas.get('x.txt'))
  t.is(stored.get('y.txt')!.sha256, a.shas.get('y.txt'))
  t.is(stored.get('z.txt')!.sha256, b.shas.get('z.txt'))
})

test('a key that would pass maxShardSize continues in <HEX>.1.des, <HEX>.2.des…; later runs fill the last part', async (t) => {
  const dir = tempDir()
  const uids = sameShardUids(40, 7)
  const corpus = makeCorpus(path.join(dir, 'src'), uids.slice(0, 30).map((uid) => ({ uid, kind: 'random' as const, size: 10_000 })))
  const out = path.join(dir, 'out')
  const max = 45_000
  const res = await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out }, { nBits: 4, maxShardSize: max, codec: 'none' })
  const files = shardFiles(out)
  t.true(files.length >= 7, files.join(','))
  t.deepEqual(files, ['20240301/7.des', ...Array.from({ length: files.length - 1 }, (_, i) => `20240301/7.${i + 1}.des`)].sort())
  t.is(res.files, 30)
  for (const f of files) {
    const r = await ShardReader.open(path.join(out, f))
    t.true(r.dataEnd <= max, `${f}: data ${r.dataEnd} <= ${max}`)
    t.true(r.entryCount >= 1)
  }
  const stored = await readLocalStore(out)
  t.is(stored.size, 30)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha)
  // In manifest order: the first part holds the first uids.
  const first = await ShardReader.open(path.join(out, '20240301/7.des'))
  t.deepEqual(first.entries().map((e) => e.uid), uids.slice(0, first.entryCount))

  const more = makeCorpus(path.join(dir, 'more'), uids.slice(30).map((uid) => ({ uid, kind: 'random' as const, size: 10_000 })))
  await packFiles(asInputs(more.rows), { kind: 'local', dir: out }, { nBits: 4, maxShardSize: max, codec: 'none' })
  const after = shardFiles(out)
  t.true(after.length > files.length)
  const all = await readLocalStore(out)
  t.is(all.size, 40)
  for (const f of after) t.true((await ShardReader.open(path.join(out, f))).dataEnd <= max)
  // Earlier parts are untouched by the later run, only the last one and new ones change.
  t.true(after.slice(0, files.length - 1).every((f) => files.includes(f)))
})

/** `part` as an append killed after its first step leaves it: `pad` zero bytes, then a footer naming the old index from past them. */
function interruptAppend(part: string, pad: number): void {
  const old = fs.readFileSync(part)
  const indexAt = old.length - 12 - Number(old.readBigUInt64LE(old.length - 8))
  const footer = Buffer.alloc(12)
  footer.write('DESI', 0, 'latin1')
  footer.writeBigUInt64LE(BigInt(old.length + pad - indexAt), 4)
  fs.writeFileSync(part, Buffer.concat([old, Buffer.alloc(pad), footer]))
}

/** Two files of 10 KB for one key (20240301/7), the first packed under `maxShardSize` into its part 0. */
async function firstOfTwoPacked(maxShardSize: number) {
  const dir = tempDir()
  const uids = sameShardUids(2, 7)
  const corpus = makeCorpus(path.join(dir, 'src'), uids.map((uid) => ({ uid, kind: 'random' as const, size: 10_000 })))
  const out = path.join(dir, 'out')
  const opts = { nBits: 4, maxShardSize, codec: 'none' as const }
  await packFiles(asInputs(corpus.rows.slice(0, 1)), { kind: 'local', dir: out }, opts)
  return { uids, corpus, out, opts, part: path.join(out, '20240301/7.des') }
}

test('a part with an interrupted append whose file (not data) is past maxShardSize is appended to, and the append cuts its tail off', async (t) => {
  const { uids, corpus, out, opts, part } = await firstOfTwoPacked(30_000)
  interruptAppend(part, 40_000)
  t.true((await verifyShardFile(part)).problems.some((p) => /interrupted/.test(p.error)))
  await packFiles(asInputs(corpus.rows.slice(1)), { kind: 'local', dir: out }, opts)
  t.deepEqual(shardFiles(out), ['20240301/7.des'], 'the second file went into the part, not a new one')
  const report = await verifyShardFile(part)
  t.deepEqual(report.problems, [])
  t.is(report.ok, 2)
})

test('a part found full hands on the files of later chunks too, but not one it holds already (another run stored it): with --skip-existing it is skipped, without, refused', async (t) => {
  const dir = tempDir()
  const src = path.join(dir, 'src')
  fs.mkdirSync(src)
  const item = (uid: string, size: number, index: number): PlannedInput => {
    fs.writeFileSync(path.join(src, uid), Buffer.alloc(size, index % 251))
    return { input: { uid, createdAt: '2024-03-02T09:15:00Z', source: path.join(src, uid) }, index, label: `input ${index}`, dateDir: '20240302', shardHex: '35', size, onS3: false }
  }
  const target = new LocalTarget(path.join(dir, 'out'), { writer: { codec: 'none' }, bigfilesPrefix: '_bigFiles' })
  await target.check()
  const plan = { dateDir: '20240302', shardHex: '35', items: [] }
  // Another run stored "dup" in part 0 and filled it (past the limit of 50 bytes).
  const other = await target.writePart(plan, 0, [item('dup', 10, 0), item('filler', 100, 1)], undefined, { progress() {} })
  await other.done
  await target.flush()
  // This run planned "dup" too, after more files than one chunk holds (4096 local files).
  const items = Array.from({ length: 4096 }, (_, i) => item(`f${i}`, 1, i + 2))
  items.push(item('dup', 10, 5000))
  const skipping = await target.writePart(plan, 0, items, 50, { progress() {}, skipExisting: true })
  t.deepEqual(skipping.fill.skipped.map((p) => p.input.uid), ['dup'])
  t.false(skipping.fill.rest.some((p) => p.input.uid === 'dup'))
  t.is(skipping.fill.rest.length, 4096)
  const refused = await t.throwsAsync(target.writePart(plan, 0, items, 50, { progress() {} }))
  t.is(errorCode(refused), 'DES_DUPLICATE')
})

/** True once some process waits for a flock on `file` (/proc/locks lists it as "-> FLOCK ..."). */
function someoneWaitsFor(file: string): boolean {
  const ino = String(fs.statSync(file).ino)
  return fs.readFileSync('/proc/locks', 'utf8').split('\n').some((l) => /->\s+FLOCK/.test(l) && l.split(/\s+/).some((f) => f.split(':')[2] === ino))
}

test('a part another run has an append staged in (file past maxShardSize, its index not yet showing the uids): this run waits for its turn, and a uid both store is in one part', async (t) => {
  const { uids, corpus, out, opts, part } = await firstOfTwoPacked(20_000)
  // The other run: the second uid added to part 0 and staged, holding the part's turn.
  const other = (await ShardWriter.tryAppend(part, { codec: 'none' }))!
  await other.add(uids[1], fs.readFileSync(corpus.rows[1].source_path))
  const group = new StagedGroup()
  await other.stageInto(group)
  t.true(fs.statSync(part).size >= opts.maxShardSize)
  const run = packFiles(asInputs(corpus.rows.slice(1)), { kind: 'local', dir: out }, { ...opts, skipExisting: true })
  let settled = false
  void run.then(() => (settled = true), () => (settled = true))
  // This run either waits for the part's turn or (wrongly) packs without it.
  while (!settled && !someoneWaitsFor(part)) await new Promise((r) => setTimeout(r, 5))
  await group.commit()
  const res = await run
  t.is(res.files, 0)
  const stored = await readLocalStore(out) // throws if a uid is in two parts
  t.is(stored.size, 2)
  t.deepEqual(shardFiles(out), ['20240301/7.des'])
})

test('a payload larger than maxShardSize gets a part of its own', async (t) => {
  const dir = tempDir()
  const uids = sameShardUids(3, 2)
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: uids[0], kind: 'random', size: 1000 },
    { uid: uids[1], kind: 'random', size: 50_000 },
    { uid: uids[2], kind: 'random', size: 1000 },
  ])
  const out = path.join(dir, 'out')
  await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out }, { nBits: 4, maxShardSize: 10_000 })
  t.deepEqual(shardFiles(out), ['20240301/2.1.des', '20240301/2.2.des', '20240301/2.des'])
  t.is((await readLocalStore(out)).size, 3)
})

test('a full part another run stored a uid in after this run looked: the uid is skipped or refused there, never stored again in the next part', async (t) => {
  const dir = tempDir()
  // x and y route to one key; x alone fills its part 0 (12,000 bytes against a 10,000 limit).
  const y = Array.from({ length: 500 }, (_, i) => `y${i}`).find((uid) => locateShard(uid, '2024-03-01T12:00:00Z', 4).shardIndex === locateShard('x', '2024-03-01T12:00:00Z', 4).shardIndex)!
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'x', kind: 'random', size: 12_000 },
    { uid: y, size: 300 },
  ])
  const [x, yInput] = asInputs(corpus.rows)
  const out = path.join(dir, 'out')
  const opts = { nBits: 4, maxShardSize: 10_000 }
  await packFiles([x], { kind: 'local', dir: out }, opts)
  t.deepEqual(shardFiles(out), [`20240301/${locateShard('x', x.createdAt, 4).shardHex}.des`])
  // This run looked before x was stored (it saw no parts): x is in the full part 0 when it writes.
  const sawNothing = { existingParts: () => [] }
  const refused = await t.throwsAsync(runPack([x, yInput], { kind: 'local', dir: out }, opts, sawNothing))
  t.is(errorCode(refused), 'DES_DUPLICATE')
  const r = await runPack([x, yInput], { kind: 'local', dir: out }, { ...opts, skipExisting: true }, sawNothing)
  t.is(r.skipped, 1)
  t.is(r.files, 1)
  // readLocalStore refuses a uid stored twice.
  const stored = await readLocalStore(out)
  t.deepEqual([...stored.keys()].sort(), ['x', y].sort())
  t.is(stored.get('x')!.sha256, corpus.shas.get('x'))
})

test('a source that changes size after the run looked at it is refused; without size_bytes the message says the size it had, not what a manifest said', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'grows', size: 100 }])
  const [declared] = asInputs(corpus.rows)
  const file = declared.source
  for (const [input, said] of [
    [declared, /is 150 bytes, the manifest says 100$/],
    [{ ...declared, sizeBytes: undefined }, /is 150 bytes, it was 100 bytes when the run began$/],
  ] as const) {
    fs.writeFileSync(file, Buffer.alloc(100, 1))
    // Looked at (stat), then grown before it is read: the prepass of existing parts runs in between.
    const growing = { existingParts: () => (fs.writeFileSync(file, Buffer.alloc(150, 1)), []) }
    const err = await t.throwsAsync(runPack([input], { kind: 'local', dir: path.join(dir, 'out') }, {}, growing))
    // Checked, then changed: exit 5 (a conflict), not a bad argument.
    t.is(errorCode(err), 'DES_SOURCE_CHANGED')
    t.regex(err!.message, said)
  }
})

test('bad inputs are refused before anything is written, naming the uid', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'ok1', size: 100 },
    { uid: 'ok2', size: 100 },
  ])
  const good = asInputs(corpus.rows)
  const out = path.join(dir, 'out')
  const cases: Array<[string, PackInput[], string, RegExp]> = [
    ['duplicate uid', [...good, { ...good[0] }], 'DES_DUPLICATE', /duplicate uid "ok1": input 1 and input 3/],
    ['missing source', [...good, { uid: 'gone', createdAt: '2024-01-01T00:00:00Z', source: path.join(dir, 'nope') }], 'DES_NOT_FOUND', /uid "gone" \(input 3\): source .* does not exist/],
    ['size mismatch', [good[0], { ...good[1], sizeBytes: 99 }], 'DES_BAD_ARG', /uid "ok2" \(input 2\): source .* is 100 bytes, the manifest says 99/],
    ['bad date', [...good, { ...good[0], uid: 'd', createdAt: 'yesterday' }], 'DES_BAD_ARG', /uid "d" \(input 3\): created_at "yesterday"/],
    ['source is a directory', [...good, { ...good[0], uid: 'dir', source: dir, sizeBytes: undefined }], 'DES_BAD_ARG', /uid "dir".*not a regular file/],
    ['s3 source without a client', [...good, { uid: 's3', createdAt: '2024-01-01T00:00:00Z', source: 's3://b/k' }], 'DES_CONFIG', /uid "s3"/],
    // Both would be "\ufffd" in Rust: one uid, or one path, for two different strings.
    ['a lone surrogate in a uid', [...good, { ...good[0], uid: 'x\ud800' }, { ...good[1], uid: 'x\udfff' }], 'DES_BAD_ARG', /uid "x\\ud800" \(input 3\): uid is not valid Unicode/],
    ['a lone surrogate in a source', [...good, { ...good[0], uid: 'y', source: good[0].source + '\udc00' }], 'DES_BAD_ARG', /uid "y" \(input 3\): source is not valid Unicode/],
  ]
  for (const [name, inputs, code, message] of cases) {
    const err = await t.throwsAsync(packFiles(inputs, { kind: 'local', dir: out }), undefined, name)
    t.is(errorCode(err), code, name)
    t.regex(err!.message, message, name)
    t.deepEqual(shardFiles(out), [], `${name}: no shard written`)
  }
  const badOpt = await t.throwsAsync(packFiles(good, { kind: 'local', dir: out }, { nBits: 3 }))
  t.is(errorCode(badOpt), 'DES_BAD_ARG')
})

test('the manifest parser names the line of a bad entry, in arrays and JSON lines', (t) => {
  const text = '[\n {"uid": "a", "created_at": "2024-01-01", "size_bytes": 1, "source_path": "/x"},\n\n {"uid": "b", "created_at": 5, "source_path": "/y"}\n]'
  t.throws(() => parseManifest(text), { message: /manifest line 4 \(entry 2\): uid "b": "created_at" must be an ISO-8601 string/ })
  const ok = parseManifest('[\n {"uid": 7, "created_at": "2024-01-01", "size_bytes": 1, "source_path": "/x", "meta": {"k": [1, "]"]}},\n {"uid": "b", "created_at": "2024-01-02", "source_path": "/y"}\n]')
  t.deepEqual(ok.lines, [2, 3])
  t.is(ok.inputs[0].uid, '7')
  t.deepEqual(ok.inputs[0].meta, { k: [1, ']'] })
  t.is(ok.inputs[1].sizeBytes, undefined)
  const lines = parseManifest('{"uid": "a", "created_at": "2024-01-01", "source_path": "/x"}\n\n{"uid": "b", "created_at": "2024-01-01", "source_path": "/y"}\n')
  t.deepEqual(lines.lines, [1, 3])
  t.throws(() => parseManifest('{"uid": "a", "created_at": "2024-01-01", "source_path": "/x"}\n{"uid": "b", "created_at": "2024-01-01", "source_path": "/y", "size_bytes": -1}\n'), {
    message: /line 2: uid "b": "size_bytes"/,
  })
  t.throws(() => parseManifest('[\n {"uid": "a",\n  "created_at": }\n]'), { message: /not valid JSON: line 2 \(entry 1\)/ })
  t.throws(() => parseManifest('{"a": 1'), { message: /line 1 is not valid JSON/ })
  t.throws(() => parseManifest(''), { message: /empty/ })
  t.throws(() => parseManifest('[1]'), { message: /line 1 \(entry 1\): expected an object/ })
})

test('a uid given as a number becomes the text the original makes of it (str() of what Python\'s json reads): every digit of an integer, a float as Python writes it', (t) => {
  // Each pair: the uid as the manifest spells it, and Python's str(json.loads(it)).
  const cases: Array<[string, string]> = [
    ['7', '7'],
    ['1.0', '1.0'],
    ['1e3', '1000.0'],
    ['1E+2', '100.0'],
    ['12345678901234567890123', '12345678901234567890123'],
    ['-5', '-5'],
    ['-0', '0'],
    ['-0.0', '-0.0'],
    ['1e16', '1e+16'],
    ['1e15', '1000000000000000.0'],
    ['0.1', '0.1'],
    ['0.0001', '0.0001'],
    ['0.00001', '1e-05'],
    ['1.5e-7', '1.5e-07'],
    ['123456789012345678.5', '1.2345678901234568e+17'],
    ['1e400', 'inf'],
  ]
  for (const [spelled, text] of cases) {
    // In an array and as JSON lines; a "uid" inside meta, and a repeated key (the last counts), do not confuse it.
    const entry = `{"meta": {"uid": 99}, "uid": 0, "created_at": "2024-01-01", "source_path": "/x", "uid" : ${spelled}}`
    t.is(parseManifest(`[${entry}]`).inputs[0].uid, text, `array: ${spelled}`)
    t.is(parseManifest(`${entry}\n`).inputs[0].uid, text, `lines: ${spelled}`)
  }
  t.throws(() => parseManifest('[{"uid": true, "created_at": "2024-01-01", "source_path": "/x"}]'), { message: /"uid" must be a non-empty string or a number/ })
  // An earlier "uid" holding an object or array is walked through, not read as a number.
  for (const earlier of ['{"a": 1, "b": [2]}', '[1, 2]']) {
    t.is(parseManifest(`[{"uid": ${earlier}, "uid": 7.5, "created_at": "2024-01-01", "source_path": "/x"}]`).inputs[0].uid, '7.5', earlier)
  }
  // The same text for des locate --stdin and the library call.
  const located = locateLine('{"uid": 1e3, "created_at": "2024-03-02T09:15:00Z"}', 8)
  t.is(JSON.parse(located).uid, '1000.0')
  t.is(JSON.parse(locateLine('{"uid": 12345678901234567890123, "created_at": "2024-03-02T09:15:00Z"}', 8)).uid, '12345678901234567890123')
  t.is(locateShard(1.5e-7, '2024-03-02T09:15:00Z').uid, '1.5e-07')
  t.throws(() => locateShard(2 ** 53 + 2, '2024-03-02T09:15:00Z'), { message: /too large to be read exactly/ })
})

test('progress reports reach the totals', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: 50 }, (_, i) => ({ uid: `p${i}`, size: 1000 + i })))
  const seen: Array<{ files: number; bytes: number; totalFiles: number; totalBytes: number }> = []
  await packFiles(asInputs(corpus.rows), { kind: 'local', dir: path.join(dir, 'out') }, { onProgress: (p) => seen.push(p) })
  const last = seen[seen.length - 1]
  t.is(last.files, 50)
  t.is(last.totalFiles, 50)
  t.is(last.bytes, last.totalBytes)
  t.is(last.totalBytes, corpus.rows.reduce((s, r) => s + r.size_bytes, 0))
  for (let i = 1; i < seen.length; i++) t.true(seen[i].files >= seen[i - 1].files)
})

test('the progress bar draws on a terminal (files, bytes, rate, ETA) and stays off a pipe', async (t) => {
  const { PassThrough } = await import('node:stream')
  const { progressBar } = await import('../src/pack')
  const fakeTty = Object.assign(new PassThrough(), {
    isTTY: true,
    columns: 160,
    cursorTo: (_x: number, _y?: unknown, cb?: () => void) => (cb?.(), true),
    moveCursor: (_dx: number, _dy: number, cb?: () => void) => (cb?.(), true),
    clearLine: (_d: number, cb?: () => void) => (cb?.(), true),
    clearScreenDown: (cb?: () => void) => (cb?.(), true),
  })
  let drawn = ''
  fakeTty.on('data', (d: Buffer) => (drawn += d.toString()))
  const bar = progressBar(fakeTty as unknown as NodeJS.WriteStream)!
  t.truthy(bar)
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: 30 }, (_, i) => ({ uid: `t${i}`, size: 2048 })))
  await packFiles(asInputs(corpus.rows), { kind: 'local', dir: path.join(dir, 'out') }, { onProgress: bar.onProgress })
  bar.stop()
  t.regex(drawn, /30\/30 files/)
  t.regex(drawn, /60\.0 KiB\/60\.0 KiB/)
  t.regex(drawn, /ETA/)
  t.is(progressBar(new PassThrough() as unknown as NodeJS.WriteStream), null)
})

test('a source that changes after the checks fails its part only: named with its input, earlier shards complete', async (t) => {
  const dir = tempDir()
  // Six keys (shards 1..6 with n_bits 4), the changed source in the last one.
  const corpus = makeCorpus(path.join(dir, 'src'), [17, 18, 19, 20, 21, 22].map((n) => ({ uid: String(n), size: 1000 })))
  const out = path.join(dir, 'out')
  let truncated = false
  const err = await t.throwsAsync(
    runPack(
      asInputs(corpus.rows),
      { kind: 'local', dir: out },
      { nBits: 4 },
      {
        // Asked for each key's existing parts after every source was checked, before anything is written.
        existingParts: () => {
          if (!truncated) fs.truncateSync(corpus.rows[5].source_path, 10)
          truncated = true
          return undefined
        },
      },
    ),
  )
  t.is(errorCode(err), 'DES_SOURCE_CHANGED')
  t.regex(err!.message, /uid "22" \(input 6\): source .* is 10 bytes, the manifest says 1000/)
  t.regex(err!.message, /\d shards written before this are complete/)
  t.deepEqual(shardFiles(out), ['20240301/1.des', '20240301/2.des', '20240301/3.des', '20240301/4.des', '20240301/5.des'])
  const stored = await readLocalStore(out)
  for (const uid of ['17', '18', '19', '20', '21']) t.is(stored.get(uid)!.sha256, corpus.shas.get(uid))
})

test('small parts (packed many per call) and a large part (its own writer) in one run: every file stored once, in its key', async (t) => {
  const dir = tempDir()
  const at = '2024-03-01T12:00:00Z'
  const out = path.join(dir, 'out')
  // Two runs into one store (the second appends to the first's parts), each with
  // three uids of one key, 6 MiB each: 18 MiB is past the batch's part size, so
  // that part has a writer of its own; 30 small files take the batch.
  for (const run of ['a', 'b']) {
    const bigUids: string[] = []
    const bigIndex = locateShard(`${run}-big0`, at, 4).shardIndex
    for (let i = 0; bigUids.length < 3; i++) if (locateShard(`${run}-big${i}`, at, 4).shardIndex === bigIndex) bigUids.push(`${run}-big${i}`)
    const specs = [...bigUids.map((uid) => ({ uid, size: 6 << 20 })), ...Array.from({ length: 30 }, (_, i) => ({ uid: `${run}-small${i}`, size: 500 + i }))]
    const corpus = makeCorpus(path.join(dir, run), specs)
    const result = await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out }, { nBits: 4 })
    t.is(result.files, specs.length)
    const stored = await readLocalStore(out)
    for (const [uid, sha] of corpus.shas) {
      t.is(stored.get(uid)?.sha256, sha, uid)
      t.is(stored.get(uid)?.key, `20240301/${locateShard(uid, at, 4).shardHex}.des`, uid)
    }
  }
  t.is((await readLocalStore(out)).size, 66)
})

const cacheViewMissing = noCacheView(os.tmpdir())
if (cacheViewMissing) console.warn(`pack.spec: the page cache test is skipped: ${cacheViewMissing} under ${os.tmpdir()}`)

;(cacheViewMissing ? test.skip : test)('new parts, batched or through their own writer, are written past the page cache, all but their index and footer', async (t) => {
  const dir = tempDir()
  const at = '2024-03-01T12:00:00Z'
  // One part of three 6 MiB files (its own writer) and 40 files of 64 KiB
  // over the other keys (batched parts of a few hundred KiB).
  const bigIndex = locateShard('big0', at, 4).shardIndex
  const bigUids: string[] = []
  for (let i = 0; bigUids.length < 3; i++) if (locateShard(`big${i}`, at, 4).shardIndex === bigIndex) bigUids.push(`big${i}`)
  // And 300 files of 300 bytes in one more key: an index of many blocks.
  const manyIndex = (bigIndex + 1) % 16
  const manyUids: string[] = []
  for (let i = 0; manyUids.length < 300; i++) if (locateShard(`many${i}`, at, 4).shardIndex === manyIndex) manyUids.push(`many${i}`)
  const specs = [
    ...bigUids.map((uid) => ({ uid, kind: 'random' as const, size: 6 << 20 })),
    ...Array.from({ length: 40 }, (_, i) => ({ uid: `small${i}`, kind: 'random' as const, size: 64 << 10 })),
    ...manyUids.map((uid) => ({ uid, kind: 'random' as const, size: 300 })),
  ]
  const corpus = makeCorpus(path.join(dir, 'src'), specs)
  const out = path.join(dir, 'out')
  await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out }, { nBits: 4 })
  const shards = shardFiles(out).map((f) => path.join(out, f))
  // fincore: the bytes of each file in the page cache, looked at before
  // anything reads the shards. Written through the cache, a shard stays there
  // whole after its sync; written directly, only the block where its
  // payloads end and its index and footer went through it.
  const cached = cachedBytes(shards)
  const page = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }))
  t.is(cached.length, shards.length)
  let total = 0
  const indexSizes: number[] = []
  for (const [i, file] of shards.entries()) {
    const reader = await ShardReader.open(file)
    indexSizes.push(reader.indexSize)
    const size = fs.statSync(file).size
    total += size
    // The cached part starts on the page where the payloads' last block starts.
    const tail = size - Math.floor(Math.floor(reader.dataEnd / 4096) * 4096 / page) * page
    t.true(cached[i] >= size - reader.dataEnd, `${file}: index and footer (${size - reader.dataEnd} bytes) cached, ${cached[i]} bytes are`)
    t.true(cached[i] <= tail + page, `${file}: ${cached[i]} bytes cached, of ${size}; payloads end in the block ${tail} bytes from the end`)
  }
  t.true(total > 20 << 20, `the store holds ${total} bytes`)
  // Set off, the same run leaves its shards in the cache whole.
  const cachedOut = path.join(dir, 'cached')
  await packFiles(asInputs(corpus.rows), { kind: 'local', dir: cachedOut }, { nBits: 4, writePastCache: false })
  const cachedShards = shardFiles(cachedOut).map((f) => path.join(cachedOut, f))
  // Most, not all: on a shared host the kernel may take back some of these
  // pages before fincore looks (a shard written through was once found with
  // 132 KiB of it cached), which never makes the check above pass wrongly.
  const cachedWhole = cachedBytes(cachedShards).filter((bytes, i) => bytes >= fs.statSync(cachedShards[i]).size).length
  t.true(cachedWhole > cachedShards.length / 2, `writePastCache false: ${cachedWhole} of ${cachedShards.length} shards cached whole`)
  t.true(Math.max(...indexSizes) > 3 * 4096, `an index of several blocks: ${Math.max(...indexSizes)} bytes`)
  // And every byte is there.
  const stored = await readLocalStore(out)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)?.sha256, sha, uid)
})

test('a store folder made by the run is named durably: the folders above each one made are the ones synced', (t) => {
  // mkdir made /s (the store's parent folder existed): / names it.
  t.deepEqual(foldersNaming('/s', '/s'), ['/'])
  // It made /data/a, /data/a/b and the store /data/a/b/store: /data/a/b, /data/a and /data name them.
  t.deepEqual(foldersNaming('/data/a', '/data/a/b/store'), ['/data/a/b', '/data/a', '/data'])
  // Relative paths are resolved first.
  t.deepEqual(foldersNaming('out', 'out/store'), [path.resolve('out'), process.cwd()])
})

const flockMissing = (() => {
  try {
    execFileSync('flock', ['--version'], { stdio: 'ignore' })
    return false
  } catch {
    return true
  }
})()

;(flockMissing ? test.skip : test)('a run removes the temp files dead writers left in the folders it writes to: not a live writer\'s, not a recent one, not elsewhere', async (t) => {
  const dir = tempDir()
  const out = path.join(dir, 'out')
  const at = '2024-03-01T12:00:00Z'
  // Two keys of one day and a key of another: every day written to is tidied.
  const laterDay = '2024-03-03T08:00:00Z'
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'a.txt', size: 2000, createdAt: at }, { uid: 'b.json', size: 3000, createdAt: at }, { uid: 'c.txt', size: 1000, createdAt: laterDay }])
  const day = path.join(out, '20240301')
  const otherDay = path.join(out, '20240302')
  const names = {
    dead: path.join(day, '.des-tmp-dead01.part'),
    deadBigfile: path.join(day, '_bigFiles', '.des-tmp-dead02.part'),
    deadLaterDay: path.join(out, '20240303', '.des-tmp-dead04.part'),
    recent: path.join(day, '.des-tmp-recent.part'),
    live: path.join(day, '.des-tmp-live01.part'),
    elsewhere: path.join(otherDay, '.des-tmp-dead03.part'),
  }
  for (const file of Object.values(names)) {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, Buffer.alloc(5000, 7))
  }
  // A live writer: another process holds the file's lock, as a writer holds its temp file's.
  const holder = spawn('flock', ['--nonblock', names.live, '--command', 'echo held; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise((r) => holder.on('close', r))
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve())
    holder.once('close', (code) => reject(new Error(`flock exited ${code}`)))
  })
  const hourAgo = new Date(Date.now() - 61 * 60_000)
  for (const file of [names.dead, names.deadBigfile, names.deadLaterDay, names.live, names.elsewhere]) fs.utimesSync(file, hourAgo, hourAgo)
  try {
    const r = await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out }, { nBits: 4 })
    t.is(r.files, 3)
    t.is(new Set(r.shards.map((s) => s.key)).size, 3, 'three keys, two of them one day\'s')
    t.is(r.tempsRemoved, 3)
    t.false(fs.existsSync(names.dead))
    t.false(fs.existsSync(names.deadBigfile))
    t.false(fs.existsSync(names.deadLaterDay))
    for (const kept of [names.recent, names.live, names.elsewhere]) t.true(fs.existsSync(kept), kept)
  } finally {
    holder.stdin.end()
    await exited
  }
  // Its writer gone, the old temp file is a dead one's.
  const again = await packFiles(asInputs(corpus.rows), { kind: 'local', dir: out }, { nBits: 4, skipExisting: true })
  t.is(again.tempsRemoved, 1)
  t.false(fs.existsSync(names.live))
  t.true(fs.existsSync(names.recent) && fs.existsSync(names.elsewhere))
  const stored = await readLocalStore(out)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)?.sha256, sha, uid)
})
