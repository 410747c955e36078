// Manifests read as a stream and plans that spill to temp files: the scanner
// finds the same entries and lines however the bytes arrive, names the line
// of every malformed manifest, and a spilled plan packs exactly what a plan
// in memory packs, with the same errors.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ManifestScanner, parseManifest, readManifest, readManifestBatches } from '../src/pack/manifest'
import { runPack, type PackInput } from '../src/pack'
import { errorCode } from '../src/errors'
import { locateShard } from '../src/native'
import { runCli } from './helpers/cli'
import { asInputs, makeCorpus, readLocalStore, shardFiles, tempDir } from './helpers/pack'

/** Entries and their lines, feeding `bytes` in chunks of `size`. */
function scan(bytes: Buffer, size: number): Array<{ uid: string; line: number; meta?: unknown }> {
  const out: Array<{ uid: string; line: number; meta?: unknown }> = []
  const scanner = new ManifestScanner((input, line) => out.push({ uid: input.uid, line, ...(input.meta ? { meta: input.meta } : {}) }))
  for (let i = 0; i < bytes.length; i += size) scanner.feed(bytes.subarray(i, i + size))
  scanner.end()
  return out
}

const row = (uid: unknown, extra: Record<string, unknown> = {}) => ({ uid, created_at: '2024-01-01T00:00:00Z', source_path: '/x', ...extra })

test('the scanner finds the same entries and lines however the bytes are cut', (t) => {
  // Brackets, commas and quotes inside strings, escapes, multi-byte UTF-8, nested meta, CRLF, a BOM.
  const tricky = [
    row('a]},"[{', { meta: { note: 'he said \\"hi\\" ] }', path: 'C:\\dir\\', list: [1, [2, { x: '}' }]] } }),
    row(7),
    row('zażółć-ĝ-😀', { meta: { s: '\u0001\n\t' } }),
    row('last'),
  ]
  const lines = ['\uFEFF[', ...tricky.map((r, i) => '  ' + JSON.stringify(r) + (i + 1 < tricky.length ? ',' : '')), '', ']', '']
  const bytes = Buffer.from(lines.join('\r\n'), 'utf8')
  const expected = tricky.map((r, i) => ({ uid: String(r.uid), line: i + 2, ...(r.meta ? { meta: r.meta } : {}) }))
  for (const size of [1, 2, 3, 5, 7, 16, 64, bytes.length]) t.deepEqual(scan(bytes, size), expected, `chunks of ${size}`)
  t.deepEqual(parseManifest(bytes.toString('utf8')).lines, [2, 3, 4, 5])

  // The whole array on one line, as JSON.stringify writes it: every entry on line 1.
  const oneLine = Buffer.from(JSON.stringify(tricky))
  for (const size of [1, 4, 33, oneLine.length]) t.deepEqual(scan(oneLine, size).map((e) => e.line), [1, 1, 1, 1], `one line, chunks of ${size}`)

  // JSON lines, blank lines and CRLF included.
  const jsonl = Buffer.from(['', JSON.stringify(tricky[0]), '', JSON.stringify(tricky[2]) + '\r', '  ', JSON.stringify(tricky[3])].join('\n'))
  for (const size of [1, 3, 8, jsonl.length]) t.deepEqual(scan(jsonl, size).map((e) => [e.uid, e.line]), [[String(tricky[0].uid), 2], ['zażółć-ĝ-😀', 4], ['last', 6]], `jsonl, chunks of ${size}`)
  t.deepEqual(scan(Buffer.from('[]'), 1), [])
})

test('a malformed manifest is refused with the line where it goes wrong', (t) => {
  const a = JSON.stringify(row('a'))
  const b = JSON.stringify(row('b'))
  const cases: Array<[string, string, RegExp]> = [
    ['array never closed', `[\n${a}\n`, /^manifest is not valid JSON: line 3: the manifest ends before its array is closed \(after entry 1\)$/],
    ['text after the array', `[\n${a}\n]\n{"x": 1}`, /^manifest is not valid JSON: line 4: text after the closing "\]"/],
    ['missing comma', `[\n${a}\n${b}]`, /^manifest is not valid JSON: line 3: expected "," or "\]" after entry 1/],
    ['trailing comma', `[\n${a},\n]`, /^manifest is not valid JSON: line 3: an entry is expected after ","/],
    ['two commas', `[\n${a},\n,${b}]`, /^manifest is not valid JSON: line 3 \(entry 2\)/],
    ['raw newline in a string', `[\n${a},\n{"uid": "x\ny"}]`, /^manifest is not valid JSON: line 3 \(entry 2\): Bad control character/],
    ['mismatched bracket', `[\n${a},\n {"uid": [1}\n]`, /^manifest is not valid JSON: line 3 \(entry 2\)/],
    ['string never closed', `[\n${a},\n{"uid": "abc`, /^manifest is not valid JSON: line 3 \(entry 2\)/],
    ['bad entry inside', `[\n${a},\n{"uid": }\n]`, /^manifest is not valid JSON: line 3 \(entry 2\)/],
    ['a bad scalar', `[\n${a}, tru\n]`, /^manifest is not valid JSON: line 2 \(entry 2\)/],
    ['a scalar entry', `[\n${a},\n 12]`, /^manifest line 3 \(entry 2\): expected an object$/],
    ['bad JSON line', `${a}\n${a.slice(0, -1)}\n`, /^manifest line 2 is not valid JSON/],
    ['only white space', ' \n\r\n ', /^manifest is empty$/],
    ['neither array nor lines', '"uid"', /^manifest must be a JSON array of objects \(or JSON lines\)$/],
  ]
  for (const [name, text, message] of cases) {
    for (const size of [1, 5, text.length]) {
      const err = t.throws(() => scan(Buffer.from(text), size), undefined, name)
      t.is(errorCode(err), 'DES_BAD_ARG', name)
      t.regex(err!.message, message, `${name}, chunks of ${size}`)
    }
  }
})

test('readManifest streams a file (readManifestBatches a chunk at a time); a missing one is DES_NOT_FOUND', async (t) => {
  const dir = tempDir()
  const file = path.join(dir, 'm.jsonl')
  fs.writeFileSync(file, Array.from({ length: 30_000 }, (_, i) => JSON.stringify(row(`u${i}`))).join('\n'))
  let n = 0
  for await (const e of readManifest(file)) {
    t.is(e.input.uid, `u${n}`)
    t.is(e.label, `line ${n + 1}`)
    n++
  }
  t.is(n, 30_000)
  // In batches: the same entries in the same order, more than one batch (chunks of 256 KiB).
  const batches: string[][] = []
  for await (const batch of readManifestBatches(file)) batches.push(batch.map((e) => `${e.input.uid}@${e.label}`))
  t.true(batches.length > 1)
  t.deepEqual(
    batches.flat(),
    Array.from({ length: 30_000 }, (_, i) => `u${i}@line ${i + 1}`),
  )
  const gone = readManifest(path.join(dir, 'nope.json'))
  const err = await t.throwsAsync(gone.next())
  t.is(errorCode(err), 'DES_NOT_FOUND')
  t.regex(err!.message, /cannot read manifest .*nope\.json/)
})

/** Key → the uids in it, sorted, and uid → sha256: what a store holds. */
async function storeMap(dir: string): Promise<{ keys: Record<string, string[]>; shas: Record<string, string> }> {
  const stored = await readLocalStore(dir)
  const keys: Record<string, string[]> = {}
  const shas: Record<string, string> = {}
  for (const [uid, f] of stored) {
    ;(keys[f.key] ??= []).push(uid)
    shas[uid] = f.sha256
  }
  for (const k of Object.keys(keys)) keys[k].sort()
  return { keys, shas }
}

test('a plan spilled to temp files packs what a plan in memory packs, in the same order, and leaves no temp files', async (t) => {
  const dir = tempDir()
  const days = ['2024-03-01T10:00:00Z', '2024-03-02T10:00:00Z', '2024-03-03T10:00:00Z']
  const corpus = makeCorpus(
    path.join(dir, 'src'),
    Array.from({ length: 240 }, (_, i) => ({ uid: `f${i}`, size: 500 + ((i * 37) % 900), createdAt: days[i % 3], ...(i % 10 === 0 ? { meta: { i } } : {}) })),
  )
  // Some inputs without a size: the spilled plan learns it from the source and keeps it.
  const inputs: PackInput[] = asInputs(corpus.rows).map((r, i) => (i % 7 === 0 ? { ...r, sizeBytes: undefined } : r))
  const opts = { nBits: 4, maxShardSize: 8000 }
  const inMemory = await runPack(inputs, { kind: 'local', dir: path.join(dir, 'mem') }, opts)
  const tmp = path.join(dir, 'tmp')
  fs.mkdirSync(tmp)
  for (const memoryEntries of [0, 50]) {
    const out = path.join(dir, `spill-${memoryEntries}`)
    // While it packs, the plan is in the temp dir: for 240 inputs, in a few files (not a thousand).
    let spillFiles = 0
    const onProgress = () => {
      for (const d of fs.readdirSync(tmp).filter((f) => f.startsWith('des-pack-plan-'))) spillFiles = Math.max(spillFiles, fs.readdirSync(path.join(tmp, d)).length)
    }
    const spilled = await runPack(inputs, { kind: 'local', dir: out }, { ...opts, onProgress }, { memoryEntries, tmpDir: tmp })
    t.true(spillFiles > 0 && spillFiles <= 4, `the plan was spilled, into ${spillFiles} files`)
    t.deepEqual(await storeMap(out), await storeMap(path.join(dir, 'mem')), `memoryEntries ${memoryEntries}`)
    t.deepEqual(shardFiles(out), shardFiles(path.join(dir, 'mem')))
    t.deepEqual(spilled.shards.map((s) => s.key), inMemory.shards.map((s) => s.key), 'keys in order of first appearance, parts in order')
    t.deepEqual(
      spilled.shards.map((s) => s.uids),
      inMemory.shards.map((s) => s.uids),
    )
    t.is(spilled.bytesIn, inMemory.bytesIn)
    t.deepEqual(fs.readdirSync(tmp), [], 'spill files removed')
  }
  const { shas } = await storeMap(path.join(dir, 'mem'))
  for (const [uid, sha] of corpus.shas) t.is(shas[uid], sha)
})

test('a plan spills by the bytes of its manifest text as well as by entries, and stores byte for byte what a plan in memory stores', async (t) => {
  // A meta may be megabytes: 25,000 of them in memory would not fit in the
  // heap, so the plan spills past `memoryBytes` of manifest text whatever the
  // count of entries (here far under memoryEntries). A budget of 1 byte: each
  // entry alone passes it.
  const dir = tempDir()
  const days = ['2024-03-01T10:00:00Z', '2024-03-02T10:00:00Z']
  const corpus = makeCorpus(
    path.join(dir, 'src'),
    Array.from({ length: 120 }, (_, i) => ({ uid: `m${i}`, size: 300 + ((i * 53) % 700), createdAt: days[i % 2], meta: { i, blob: `${i}:`.repeat(400 + i * 7), nested: { list: [i, 'x'] } } })),
  )
  const manifest = path.join(dir, 'manifest.jsonl')
  fs.writeFileSync(manifest, corpus.rows.map((r) => JSON.stringify(r)).join('\n'))
  // Each entry carries the bytes of its text, in JSON lines and in an array.
  const texts = corpus.rows.map((r) => Buffer.byteLength(JSON.stringify(r)))
  for (const file of [manifest, corpus.manifestPath]) {
    const bytes: Array<number | undefined> = []
    for await (const batch of readManifestBatches(file)) bytes.push(...batch.map((e) => e.bytes))
    t.deepEqual(bytes, file === manifest ? texts : corpus.rows.map((r) => Buffer.byteLength(JSON.stringify(r, null, 1).replace(/\n/g, '\n '))), file)
  }
  const opts = { nBits: 4, maxShardSize: 20_000 }
  const tmp = path.join(dir, 'tmp')
  fs.mkdirSync(tmp)
  const spillDirsSeen = () => fs.readdirSync(tmp).filter((f) => f.startsWith('des-pack-plan-')).length
  let spilledInMemory = 0
  const inMemory = await runPack(readManifestBatches(manifest), { kind: 'local', dir: path.join(dir, 'mem') }, { ...opts, onProgress: () => (spilledInMemory += spillDirsSeen()) }, { tmpDir: tmp })
  t.is(spilledInMemory, 0, 'the default budgets hold this manifest in memory')
  const bytesOf = (store: string) => Object.fromEntries(shardFiles(store).map((f) => [f, fs.readFileSync(path.join(store, f)).toString('base64')]))
  for (const memoryBytes of [1, 20_000]) {
    const out = path.join(dir, `bytes-${memoryBytes}`)
    let spilled = 0
    const result = await runPack(readManifestBatches(manifest), { kind: 'local', dir: out }, { ...opts, onProgress: () => (spilled += spillDirsSeen()) }, { memoryBytes, tmpDir: tmp })
    t.true(spilled > 0, `memoryBytes ${memoryBytes}: the plan was spilled`)
    t.deepEqual(bytesOf(out), bytesOf(path.join(dir, 'mem')), `memoryBytes ${memoryBytes}: the same shards, byte for byte`)
    t.deepEqual(
      result.shards.map((s) => [s.key, s.files]),
      inMemory.shards.map((s) => [s.key, s.files]),
    )
    t.deepEqual(fs.readdirSync(tmp), [], 'spill files removed')
  }
  const stored = await readLocalStore(path.join(dir, 'mem'))
  for (const r of corpus.rows) t.deepEqual(stored.get(r.uid)?.meta, r.meta)
})

test('a manifest\'s sources read ahead while it is planned are stored byte for byte as the same inputs given as an array', async (t) => {
  // A manifest run reads and compresses its first sources on other threads
  // while it plans (des-core prefetch.rs); an array run does not. Their
  // shards must not differ by a byte: kinds that compress and that do not,
  // BigFiles, an input without a size, metas, several keys.
  const dir = tempDir()
  const kinds = ['text', 'json', 'random', 'zeros'] as const
  const corpus = makeCorpus(
    path.join(dir, 'src'),
    Array.from({ length: 300 }, (_, i) => ({ uid: `doc-${i}.${i % 3 === 0 ? 'json' : 'pdf'}`, kind: kinds[i % 4], size: i % 50 === 7 ? 9000 : 200 + ((i * 53) % 3000), createdAt: `2024-05-0${1 + (i % 3)}T08:00:00Z`, ...(i % 9 === 0 ? { meta: { i } } : {}) })),
  )
  const rows = corpus.rows.map((r, i) => (i === 11 ? { ...r, size_bytes: undefined } : r))
  const manifest = path.join(dir, 'm.json')
  fs.writeFileSync(manifest, JSON.stringify(rows))
  const opts = { nBits: 4, bigFileThreshold: 8000 }
  const streamed = await runPack(readManifestBatches(manifest), { kind: 'local', dir: path.join(dir, 'streamed') }, opts)
  await runPack(asInputs(rows), { kind: 'local', dir: path.join(dir, 'array') }, opts)
  t.is(streamed.files, 300)
  const files = shardFiles(path.join(dir, 'array'))
  t.deepEqual(shardFiles(path.join(dir, 'streamed')), files)
  t.true(files.filter((f) => f.endsWith('.des')).length > 4)
  for (const f of files) t.true(fs.readFileSync(path.join(dir, 'streamed', f)).equals(fs.readFileSync(path.join(dir, 'array', f))), f)
  const { shas } = await storeMap(path.join(dir, 'streamed'))
  for (const [uid, sha] of corpus.shas) t.is(shas[uid], sha)
})

test('spilled or not, the first problem in manifest order is the one reported, and nothing is written', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: 50 }, (_, i) => ({ uid: `d${i}`, size: 100 })))
  const good = asInputs(corpus.rows)
  const withDup = (inputs: PackInput[], at: number, of: number) => inputs.map((r, i) => (i === at ? { ...r, uid: inputs[of].uid } : r))
  // d10 again at 41, d20 again at 30: the duplicate seen first is d20 (its second copy comes first).
  const twoDups = withDup(withDup(good, 41, 10), 30, 20)
  const badDate = (inputs: PackInput[], at: number) => inputs.map((r, i) => (i === at ? { ...r, createdAt: '2024-13-45' } : r))
  const cases: Array<[string, PackInput[], string, RegExp]> = [
    ['two duplicates', twoDups, 'DES_DUPLICATE', /^duplicate uid "d20": input 21 and input 31$/],
    ['a bad date after the duplicate', badDate(twoDups, 45), 'DES_DUPLICATE', /^duplicate uid "d20": input 21 and input 31$/],
    ['a bad date before it', badDate(twoDups, 25), 'DES_BAD_ARG', /^uid "d25" \(input 26\): created_at "2024-13-45"/],
    ['a missing source', good.map((r, i) => (i === 33 ? { ...r, source: path.join(dir, 'gone') } : r)), 'DES_NOT_FOUND', /^uid "d33" \(input 34\): source .*gone does not exist$/],
  ]
  const tmp = path.join(dir, 'tmp')
  fs.mkdirSync(tmp)
  const out = path.join(dir, 'out')
  for (const [name, inputs, code, message] of cases) {
    for (const memoryEntries of [undefined, 0, 20]) {
      const err = await t.throwsAsync(runPack(inputs, { kind: 'local', dir: out }, {}, { memoryEntries, tmpDir: tmp }))
      t.is(errorCode(err), code, `${name}, memoryEntries ${memoryEntries}`)
      t.regex(err!.message, message, `${name}, memoryEntries ${memoryEntries}`)
      t.deepEqual(shardFiles(out), [], `${name}: nothing written`)
      t.deepEqual(fs.readdirSync(tmp), [], `${name}: spill files removed`)
    }
  }
})

test('sources of a manifest read in many chunks are checked as it is read: the first bad one in manifest order is reported, nothing is written; another worker\'s bad source is not this worker\'s', async (t) => {
  const dir = tempDir()
  const n = 3000
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: n }, (_, i) => ({ uid: `c${i}`, size: 10 + (i % 7) })))
  // A long meta per entry: the manifest spans several 256 KiB chunks (several batches of early stats).
  const rows = corpus.rows.map((r) => ({ ...r, meta: { note: 'n'.repeat(300) } }))
  const write = (name: string, list: unknown[]) => {
    const file = path.join(dir, name)
    fs.writeFileSync(file, JSON.stringify(list, null, 1))
    t.true(fs.statSync(file).size > 3 * 256 * 1024, `${name} spans several chunks`)
    return file
  }
  const missingAt = (i: number) => ({ ...rows[i], source_path: path.join(dir, `gone-${i}`) })
  const folderAt = (i: number) => ({ ...rows[i], source_path: dir })
  const resizedAt = (i: number) => ({ ...rows[i], size_bytes: rows[i].size_bytes + 1 })
  const replaced = (changes: Record<number, unknown>) => rows.map((r, i) => changes[i] ?? r)
  const lineOf = (i: number) => 2 + i * 9 // JSON.stringify(list, null, 1): nine lines an entry (its meta takes three), from line 2
  const cases: Array<[string, unknown[], string, RegExp]> = [
    ['missing late, a folder later', replaced({ 2500: missingAt(2500), 2800: folderAt(2800) }), 'DES_NOT_FOUND', new RegExp(`^uid "c2500" \\(line ${lineOf(2500)}, entry 2501\\): source .*gone-2500 does not exist$`)],
    ['a size in the first chunk, a missing one later', replaced({ 40: resizedAt(40), 2500: missingAt(2500) }), 'DES_BAD_ARG', new RegExp(`^uid "c40" \\(line ${lineOf(40)}, entry 41\\): source .* is \\d+ bytes, the manifest says \\d+$`)],
    ['a folder in the middle', replaced({ 1500: folderAt(1500) }), 'DES_BAD_ARG', /^uid "c1500" \(line \d+, entry 1501\): source .* is not a regular file$/],
  ]
  const tmp = path.join(dir, 'tmp')
  fs.mkdirSync(tmp)
  const out = path.join(dir, 'out')
  for (const [name, list, code, message] of cases) {
    const manifest = write(`${name.replace(/\W+/g, '-')}.json`, list)
    for (const memoryEntries of [undefined, 0]) {
      const err = await t.throwsAsync(runPack(readManifestBatches(manifest), { kind: 'local', dir: out }, {}, { memoryEntries, tmpDir: tmp }))
      t.is(errorCode(err), code, `${name}, memoryEntries ${memoryEntries}`)
      t.regex(err!.message, message, `${name}, memoryEntries ${memoryEntries}`)
      t.deepEqual(shardFiles(out), [], `${name}: nothing written`)
    }
  }

  // Worker 0 of 2 packs its keys; a missing source among worker 1's keys is not checked by it.
  const otherWorkers = rows.findIndex((r) => locateShard(r.uid, r.created_at, 8).shardIndex % 2 === 1)
  const manifest = write('other-worker.json', replaced({ [otherWorkers]: missingAt(otherWorkers) }))
  const r = await runPack(readManifestBatches(manifest), { kind: 'local', dir: out }, { worker: { index: 0, count: 2 } })
  const mine = rows.filter((row) => locateShard(row.uid, row.created_at, 8).shardIndex % 2 === 0)
  t.is(r.files, mine.length)
  t.deepEqual([...(await readLocalStore(out)).keys()].sort(), mine.map((row) => row.uid).sort())
})

test('des pack --dry-run checks the manifest, the sources and the store, and writes nothing', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: 20 }, (_, i) => ({ uid: `r${i}`, size: 300 + i })))
  const out = path.join(dir, 'out')
  const dry = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out, '--dry-run', '--json'])
  t.is(dry.code, 0, dry.stderr)
  const plan = JSON.parse(dry.stdout.toString())
  t.true(plan.dry_run)
  t.is(plan.files, 20)
  t.is(plan.bytes_in, corpus.rows.reduce((s, r) => s + r.size_bytes, 0))
  t.false(fs.existsSync(out), 'the output dir is not even created')

  // Half of it stored: a dry run without --skip-existing finds the duplicates (exit 5), with it counts them.
  const half = path.join(dir, 'half.json')
  fs.writeFileSync(half, JSON.stringify(corpus.rows.slice(0, 10)))
  t.is((await runCli(['pack', '--input-json', half, '--output-dir', out])).code, 0)
  const before = shardFiles(out).map((f) => fs.readFileSync(path.join(out, f)))
  const refused = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out, '--dry-run'])
  t.is(refused.code, 5, refused.stderr)
  t.regex(refused.stderr, /already in its shard/)
  const skip = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out, '--dry-run', '--skip-existing'])
  t.is(skip.code, 0, skip.stderr)
  t.regex(skip.stdout.toString(), /^dry run: .* would pack 10 files .*; 10 already stored would be skipped/)
  t.deepEqual(
    shardFiles(out).map((f) => fs.readFileSync(path.join(out, f))),
    before,
    'the store is unchanged',
  )
})

test('a meta nested deeper than des-core reads is refused by the manifest check, a dry run too, and nothing is written', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'deep', size: 10 }])
  const nested = (depth: number) => '{"a":'.repeat(depth - 1) + '[1]' + '}'.repeat(depth - 1)
  const manifest = (depth: number) => {
    const file = path.join(dir, `deep-${depth}.jsonl`)
    const { meta: _, ...rest } = corpus.rows[0]
    fs.writeFileSync(file, JSON.stringify(rest).slice(0, -1) + `,"meta":${nested(depth)}}\n`)
    return file
  }
  const out = path.join(dir, 'out')
  // 100,000 deep: not a stack overflow (exit 1); 128: what des-core's JSON reader refuses when it writes.
  for (const depth of [100_000, 128]) {
    for (const dry of [['--dry-run'], []]) {
      const run = await runCli(['pack', '--input-json', manifest(depth), '--output-dir', out, ...dry])
      t.is(run.code, 2, `${depth} ${dry}: ${run.stderr}`)
      t.regex(run.stderr, /^des: manifest line 1: uid "deep": "meta" nests objects and arrays more than 127 deep\n$/)
    }
  }
  t.false(fs.existsSync(out), 'nothing written')
  const ok = await runCli(['pack', '--input-json', manifest(127), '--output-dir', out])
  t.is(ok.code, 0, ok.stderr)
  t.is((await readLocalStore(out)).get('deep')?.sha256, corpus.shas.get('deep'))
})

test('a uid longer than a shard holds is refused before anything is written, a dry run too, without echoing it', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: 30 }, (_, i) => ({ uid: `r${i}`, size: 10 })))
  const long = { ...corpus.rows[0], uid: 'u'.repeat(70_000) }
  const manifest = path.join(dir, 'long.jsonl')
  fs.writeFileSync(manifest, [...corpus.rows, long].map((r) => JSON.stringify(r)).join('\n') + '\n')
  const out = path.join(dir, 'out')
  for (const dry of [['--dry-run'], []]) {
    const run = await runCli(['pack', '--input-json', manifest, '--output-dir', out, ...dry])
    t.is(run.code, 2, `${dry}: ${run.stderr}`)
    t.is(run.stderr, 'des: line 31: uid of 70000 bytes is longer than the 65535 a shard can hold\n')
  }
  t.false(fs.existsSync(out), 'nothing written')
})

test('a meta number JSON.parse does not keep (an integer past 2^53, one out of range) is refused, not stored changed', (t) => {
  const entry = (meta: string) => `{"uid":"m","created_at":"2024-01-01T00:00:00Z","source_path":"/x","meta":${meta}}\n`
  for (const [meta, at] of [
    ['{"id":12345678901234567890}', 'id'],
    ['{"a":[1,{"b":1e400}]}', 'b'],
    ['{"a":-9007199254740993}', 'a'],
  ]) {
    const err = t.throws(() => parseManifest(entry(meta)), undefined, meta)
    t.is(errorCode(err), 'DES_BAD_ARG')
    t.is(err!.message, `manifest line 1: uid "m": "meta" holds a number that would not be stored as written (at "${at}"): an integer past 2^53 or out of range; write it as a string`)
  }
  t.deepEqual(parseManifest(entry('{"a":9007199254740991,"b":0.1,"c":[-2.5e10]}')).inputs[0].meta, { a: 9007199254740991, b: 0.1, c: [-2.5e10] })
})

test('a meta number past 2^53 written as a float (6.02e23) is kept, as Python json keeps it; an integer literal beside it is still refused', (t) => {
  const entry = (meta: string) => `{"uid":"m","created_at":"2024-01-01T00:00:00Z","source_path":"/x","meta":${meta}}\n`
  const meta = parseManifest(entry('{"avogadro":6.02214076e23,"big":-1e300,"c":[2.5E21],"s":"12345678901234567890","f":1.2345678901234567e22}')).inputs[0].meta
  // What the original's json.dumps (compact) writes for the same manifest.
  t.is(JSON.stringify(meta), '{"avogadro":6.02214076e+23,"big":-1e+300,"c":[2.5e+21],"s":"12345678901234567890","f":1.2345678901234568e+22}')
  const err = t.throws(() => parseManifest(entry('{"f":1e20,"i":12345678901234567890}')))
  t.is(err!.message, 'manifest line 1: uid "m": "meta" holds a number that would not be stored as written (at "i"): an integer past 2^53 or out of range; write it as a string')
})
