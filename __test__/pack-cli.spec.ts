// `des pack` / `des-pack` run as built: summaries, errors and exit codes,
// two processes on the same keys, and a kill -9 in the middle of a run.

import test, { type ExecutionContext } from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawn } from 'node:child_process'
import { ShardReader } from '../src/native'
import { runCli } from './helpers/cli'
import { ROOT } from './helpers/golden'
import { makeCorpus, readLocalStore, shardFiles, tempDir } from './helpers/pack'

const sameShard = (n: number, shard: number, from = 0) => Array.from({ length: n }, (_, i) => String(16 * (from + i) + shard))

test('des pack --json prints a machine-readable summary and writes the layout', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'a.txt', size: 4000, createdAt: '2024-05-01T01:00:00Z' },
    { uid: 'b.txt', size: 6000, createdAt: '2024-05-02T01:00:00Z' },
    { uid: 'c.bin', kind: 'random', size: 3000, createdAt: '2024-05-02T01:00:00Z' },
  ])
  const out = path.join(dir, 'out')
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out, '--json'])
  t.is(r.code, 0, r.stderr)
  const summary = JSON.parse(r.stdout.toString())
  t.is(summary.files, 3)
  t.is(summary.bytes_in, 13000)
  t.is(summary.shards, shardFiles(out).length)
  t.true(summary.bytes_stored > 0 && summary.bytes_stored < 13000)
  t.is(typeof summary.seconds, 'number')
  t.deepEqual(summary.keys.map((k: { key: string }) => k.key).sort(), shardFiles(out))
  const stored = await readLocalStore(out)
  for (const [uid, sha] of corpus.shas) t.is(stored.get(uid)!.sha256, sha)
})

test('des pack counts the BigFile bytes it wrote in bytes stored, a duplicate once, one already stored not at all', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'big', kind: 'random', size: 3_000_000 },
    { uid: 'big2', kind: 'random', size: 2_000_000 },
    { uid: 's1', size: 50_000 },
    { uid: 's2', size: 50_000 },
    { uid: 's3', size: 50_000 },
  ])
  // The same bytes under another uid: one BigFile (named by its sha256) serves both.
  const rows = [...corpus.rows, { ...corpus.rows[0], uid: 'big-copy' }]
  const manifest = path.join(dir, 'm.json')
  fs.writeFileSync(manifest, JSON.stringify(rows))
  const out = path.join(dir, 'out')
  const env = { DES_BIG_FILE_THRESHOLD_BYTES: '1000000' }
  const r = await runCli(['pack', '--input-json', manifest, '--output-dir', out, '--json'], { env })
  t.is(r.code, 0, r.stderr)
  const summary = JSON.parse(r.stdout.toString())
  t.is(summary.bytes_in, 8_150_000)
  const stored = await readLocalStore(out)
  t.deepEqual([...stored].filter(([, f]) => f.isBigfile).map(([uid]) => uid).sort(), ['big', 'big-copy', 'big2'])
  type Key = { key: string; bytes_stored: number }
  const inlineKeys = new Set([...stored.values()].filter((f) => !f.isBigfile).map((f) => f.key))
  const small = summary.keys.filter((k: Key) => inlineKeys.has(k.key)).reduce((n: number, k: Key) => n + k.bytes_stored, 0)
  t.true(small > 0 && small < 150_000)
  // 3 MB + 2 MB written, the copy not again.
  t.is(summary.bytes_stored, 5_000_000 + small)
  t.is(summary.bytes_stored, summary.keys.reduce((n: number, k: Key) => n + k.bytes_stored, 0))
  const bigfiles = fs.readdirSync(path.join(out, '20240301', '_bigFiles'))
  t.is(bigfiles.reduce((n, f) => n + fs.statSync(path.join(out, '20240301', '_bigFiles', f)).size, 0), 5_000_000)
  t.is(summary.ratio, Number((8_150_000 / summary.bytes_stored).toFixed(3)))

  // A later run naming the same bytes finds them stored: nothing written for them.
  const again = path.join(dir, 'again.json')
  fs.writeFileSync(again, JSON.stringify([{ ...corpus.rows[0], uid: 'big-later' }, { ...corpus.rows[1], uid: 'big2-later' }]))
  const r2 = await runCli(['pack', '--input-json', again, '--output-dir', out, '--json'], { env })
  t.is(r2.code, 0, r2.stderr)
  const later = JSON.parse(r2.stdout.toString())
  t.is(later.bytes_in, 5_000_000)
  t.true(later.bytes_stored < 1000, String(later.bytes_stored))
})

test('des-pack is the same command; --profile and --codec choose the codec; the text summary names the counts', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'x.log', size: 50_000 },
    { uid: 'y.json', kind: 'json', size: 50_000 },
  ])
  for (const [args, codec] of [
    [['--profile', 'speed'], 'lz4'],
    [['--profile', 'aggressive'], 'zstd'],
    [['--codec', 'none'], 'none'],
    [['--profile', 'balanced', '--level', '1'], 'zstd'],
  ] as const) {
    const out = path.join(dir, args.join('_'))
    const r = await runCli(['--input-json', corpus.manifestPath, '--output-dir', out, ...args], { bin: 'des-pack.js' })
    t.is(r.code, 0, r.stderr)
    t.regex(r.stdout.toString(), /^packed 2 files \(.*\) into \d+ shards in .* s \(/)
    const stored = await readLocalStore(out)
    for (const [uid, sha] of corpus.shas) {
      t.is(stored.get(uid)!.sha256, sha)
      t.is(stored.get(uid)!.codec, codec, args.join(' '))
    }
  }
})

/** The bad-input cases, run with the given environment. */
async function badInputs(t: ExecutionContext, env: NodeJS.ProcessEnv): Promise<void> {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [
    { uid: 'ok1', size: 100 },
    { uid: 'ok2', size: 200 },
  ])
  const write = (name: string, text: string) => {
    const p = path.join(dir, name)
    fs.writeFileSync(p, text)
    return p
  }
  const rows = corpus.rows
  const cases: Array<[string, string, RegExp, number]> = [
    ['duplicate', write('dup.json', JSON.stringify([rows[0], rows[1], rows[0]], null, 1)), /duplicate uid "ok1": line 2, entry 1 and line 14, entry 3/, 5],
    ['missing source', write('missing.json', JSON.stringify([rows[0], { ...rows[1], uid: 'gone', source_path: path.join(dir, 'nope') }])), /uid "gone" \(line 1, entry 2\): source .*nope does not exist/, 3],
    ['size mismatch', write('size.json', JSON.stringify([rows[0], { ...rows[1], size_bytes: 201 }], null, 1)), /uid "ok2" \(line 8, entry 2\): source .* is 200 bytes, the manifest says 201/, 2],
    ['malformed manifest', write('bad.json', '[\n' + JSON.stringify(rows[0]) + ',\n{"uid": }\n]'), /manifest is not valid JSON: line 3/, 2],
    ['malformed date', write('date.json', JSON.stringify([rows[0], { ...rows[1], created_at: '2024-13-45' }], null, 1)), /uid "ok2" \(line 8, entry 2\): created_at "2024-13-45"/, 2],
    ['missing field', write('field.json', JSON.stringify([{ uid: 'q', created_at: '2024-01-01' }])), /manifest line 1 \(entry 1\): uid "q": "source_path"/, 2],
    ['no manifest', path.join(dir, 'no-such.json'), /cannot read manifest/, 3],
  ]
  const out = path.join(dir, 'out')
  for (const [name, manifest, message, exit] of cases) {
    const r = await runCli(['pack', '--input-json', manifest, '--output-dir', out], { env })
    t.is(r.code, exit, `${name}: ${r.stderr}`)
    const lines = r.stderr.split('\n').filter((l) => l && !/NodeVersionSupportWarning|AWS SDK|node >=22|upgrade to node|a\.co\/|trace-warnings|^\s*$|versions published|will require|To continue receiving|security updates|More information/.test(l))
    t.is(lines.length, 1, `${name}: ${r.stderr}`)
    t.regex(lines[0], /^des: /, name)
    t.regex(lines[0], message, name)
    t.deepEqual(shardFiles(out), [], `${name}: nothing written`)
  }
  const both = await runCli(['pack', '--input-json', corpus.manifestPath], { env })
  t.not(both.code, 0)
  t.regex(both.stderr, /exactly one of --output-dir/)
}

test('bad inputs: one clear line on stderr, a non-zero exit, no shard written', (t) => badInputs(t, {}))

test('bad inputs with the plan spilled to temp files (DES_PACK_MEMORY_ENTRIES=0): the same lines, nothing written, no temp files left', async (t) => {
  const tmp = tempDir('des-pack-spill-')
  await badInputs(t, { DES_PACK_MEMORY_ENTRIES: '0', TMPDIR: tmp })
  t.deepEqual(fs.readdirSync(tmp), [])
})

test('a temp directory the spilled plan cannot use (TMPDIR) is refused by name with exit 2, nothing written', async (t) => {
  const dir = tempDir('des-pack-tmpdir-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'a', size: 10 }])
  const out = path.join(dir, 'out')
  const gone = path.join(dir, 'no-such-tmp')
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out], { env: { DES_PACK_MEMORY_ENTRIES: '0', TMPDIR: gone } })
  t.is(r.code, 2, r.stderr)
  t.is(r.stderr, `des: the temp directory ${gone} (TMPDIR) does not exist: set TMPDIR to a writable directory\n`)
  t.deepEqual(shardFiles(out), [])
})

/** Every file and folder below `dir`, relative to it, sorted. */
function tree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map((p) => p.split(path.sep).join('/')).sort()
}

test('a refused pack into an existing store leaves nothing new behind, and a store holds only shards', async (t) => {
  const dir = tempDir()
  const out = path.join(dir, 'out')
  const first = makeCorpus(path.join(dir, 'first'), [{ uid: 'kept', size: 300 }])
  t.is((await runCli(['pack', '--input-json', first.manifestPath, '--output-dir', out])).code, 0)
  const before = tree(out)
  t.deepEqual(before.filter((p) => !/^\d{8}$|^\d{8}\/[0-9A-F]+\.des$/.test(p)), [], `only date folders and shards: ${before}`)
  const bytes = fs.readFileSync(path.join(out, before.find((p) => p.endsWith('.des'))!))
  // A new date first, then a uid already stored (no --replace): refused as a whole.
  const second = makeCorpus(path.join(dir, 'second'), [
    { uid: 'fresh', size: 100, createdAt: '2025-07-04T00:00:00Z' },
    { uid: 'kept', size: 300 },
  ])
  const r = await runCli(['pack', '--input-json', second.manifestPath, '--output-dir', out])
  t.is(r.code, 5, r.stderr)
  t.regex(r.stderr, /"kept".*already in its shard/)
  t.deepEqual(tree(out), before, 'no new folder, no lock file, no temp file')
  t.true(fs.readFileSync(path.join(out, before.find((p) => p.endsWith('.des'))!)).equals(bytes))
})

test('an unreachable bucket is a clear error and nothing is uploaded', async (t) => {
  const dir = tempDir()
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'u1', size: 100 }])
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--s3-bucket', 'nowhere'], {
    env: { DES_S3_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', DES_S3_REGION: 'us-east-1' },
  })
  t.is(r.code, 6, r.stderr)
  t.regex(r.stderr, /des: bucket nowhere: S3 is unreachable/)
})

test('two des pack processes on the same keys at once: every file of both is present, once', async (t) => {
  const dir = tempDir()
  // 4 keys, 60 files each run, small parts so both runs also roll over into continuations.
  const specs = (from: number) =>
    [1, 5, 9, 13].flatMap((shard) => sameShard(15, shard, from).map((uid) => ({ uid, kind: 'random' as const, size: 3000 + (Number(uid) % 500) })))
  const a = makeCorpus(path.join(dir, 'a'), specs(0))
  const b = makeCorpus(path.join(dir, 'b'), specs(100))
  const out = path.join(dir, 'out')
  const args = (m: string) => ['pack', '--input-json', m, '--output-dir', out, '--n-bits', '4', '--max-shard-size', '40000', '--json']
  const [ra, rb] = await Promise.all([runCli(args(a.manifestPath)), runCli(args(b.manifestPath))])
  t.is(ra.code, 0, ra.stderr)
  t.is(rb.code, 0, rb.stderr)
  const stored = await readLocalStore(out) // throws if a uid is in two parts
  t.is(stored.size, a.rows.length + b.rows.length)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)?.sha256, sha, uid)
  for (const f of shardFiles(out)) t.true((await ShardReader.open(path.join(out, f))).dataEnd <= 40000, f)
})

test('two des pack processes appending to the same existing parts at once never wait for each other for ever', async (t) => {
  const dir = tempDir()
  const out = path.join(dir, 'out')
  // 256 parts (n_bits 8, one day) that both runs then add to, in batches, each taking the parts' turns.
  const files = (tag: string) => Array.from({ length: 1024 }, (_, i) => ({ uid: `${tag}-${i}`, size: 100 + (i % 50) }))
  const base = makeCorpus(path.join(dir, 'base'), files('base'))
  const args = (m: string) => ['pack', '--input-json', m, '--output-dir', out, '--n-bits', '8', '--json']
  t.is((await runCli(args(base.manifestPath))).code, 0)
  const all = new Map(base.shas)
  // A few rounds: the two runs meet in another order each time.
  for (let round = 0; round < 3; round++) {
    const a = makeCorpus(path.join(dir, `a${round}`), files(`a${round}`))
    const b = makeCorpus(path.join(dir, `b${round}`), files(`b${round}`))
    const [ra, rb] = await Promise.all([runCli(args(a.manifestPath), { killAfterMs: 60_000 }), runCli(args(b.manifestPath), { killAfterMs: 60_000 })])
    t.is(ra.code, 0, `round ${round}, run a (-1: killed after waiting 60 s): ${ra.stderr}`)
    t.is(rb.code, 0, `round ${round}, run b (-1: killed after waiting 60 s): ${rb.stderr}`)
    for (const c of [a, b]) for (const [uid, sha] of c.shas) all.set(uid, sha)
  }
  const stored = await readLocalStore(out) // throws if a uid is in two parts
  t.is(stored.size, all.size)
  for (const [uid, sha] of all) t.is(stored.get(uid)?.sha256, sha, uid)
})

test('kill -9 in the middle of a run: the old shard is intact and no temp file looks like a shard', async (t) => {
  const dir = tempDir()
  const uids = sameShard(400, 6)
  const old = makeCorpus(path.join(dir, 'old'), uids.slice(0, 5).map((uid) => ({ uid, size: 5000 })))
  const out = path.join(dir, 'out')
  const first = await runCli(['pack', '--input-json', old.manifestPath, '--output-dir', out, '--n-bits', '4'])
  t.is(first.code, 0, first.stderr)
  const shard = path.join(out, '20240301', '6.des')
  const before = fs.readFileSync(shard)
  // A slow run: lots of incompressible data at a high zstd level, one key.
  const slow = makeCorpus(path.join(dir, 'slow'), uids.slice(5).map((uid) => ({ uid, kind: 'random' as const, size: 200_000 })))
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'des.js'), 'pack', '--input-json', slow.manifestPath, '--output-dir', out, '--n-bits', '4', '--level', '19'], {
    stdio: 'ignore',
  })
  const dateDir = path.join(out, '20240301')
  const started = Date.now()
  let sawTemp = false
  while (Date.now() - started < 30_000) {
    if (fs.readdirSync(dateDir).some((f) => f.startsWith('.des-tmp-') && fs.statSync(path.join(dateDir, f)).size > 1_000_000)) {
      sawTemp = true
      break
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  t.true(sawTemp, 'the run got under way')
  child.kill('SIGKILL')
  await new Promise((r) => child.on('close', r))
  t.deepEqual(fs.readFileSync(shard), before, 'old shard byte-identical')
  t.deepEqual(shardFiles(out), ['20240301/6.des'])
  const leftovers = fs.readdirSync(dateDir).filter((f) => f.startsWith('.des-tmp-'))
  t.true(leftovers.every((f) => !f.endsWith('.des')))
  const stored = await readLocalStore(out)
  t.is(stored.size, 5)
  for (const [uid, sha] of old.shas) t.is(stored.get(uid)!.sha256, sha)
  // The lock died with the process: a rerun goes through and adds everything.
  const rerun = await runCli(['pack', '--input-json', slow.manifestPath, '--output-dir', out, '--n-bits', '4', '--codec', 'none'])
  t.is(rerun.code, 0, rerun.stderr)
  t.is((await readLocalStore(out)).size, 400)
  // The dead run's temp files are kept while they are recent (a writer of an
  // earlier version, which does not lock them, may be at work)...
  t.true(leftovers.length > 0)
  t.true(leftovers.every((f) => fs.existsSync(path.join(dateDir, f))), 'recent temp files kept')
  t.notRegex(rerun.stdout.toString(), /temp file/)
  // ...and removed by the next run into their folder once an hour old.
  const hourAgo = new Date(Date.now() - 61 * 60_000)
  for (const f of leftovers) fs.utimesSync(path.join(dateDir, f), hourAgo, hourAgo)
  const later = await runCli(['pack', '--input-json', slow.manifestPath, '--output-dir', out, '--n-bits', '4', '--skip-existing', '--json'])
  t.is(later.code, 0, later.stderr)
  t.is(JSON.parse(later.stdout.toString()).temps_removed, leftovers.length)
  t.deepEqual(fs.readdirSync(dateDir).filter((f) => f.startsWith('.des-tmp-')), [])
  t.is((await readLocalStore(out)).size, 400)
})

test('a second run appends to the parts of the first in groups of 64: every file of both runs reads back, old bytes stay put, the store verifies clean', async (t) => {
  const dir = tempDir()
  // n_bits 8, one day: 256 keys; 2 files per key and run, so the second run's
  // appends fill four groups of 64.
  const specs = (run: string) =>
    Array.from({ length: 512 }, (_, i) => ({ uid: `${run}-${i}`, kind: 'random' as const, size: 500 + (i % 300), createdAt: '2024-06-01T00:00:00Z' }))
  const a = makeCorpus(path.join(dir, 'a'), specs('a'))
  const b = makeCorpus(path.join(dir, 'b'), specs('b'))
  const out = path.join(dir, 'out')
  const args = (m: string) => ['pack', '--input-json', m, '--output-dir', out, '--n-bits', '8', '--json']
  t.is((await runCli(args(a.manifestPath))).code, 0)
  const parts = shardFiles(out)
  const before = new Map(parts.map((f) => [f, fs.readFileSync(path.join(out, f))]))
  const r = await runCli(args(b.manifestPath))
  t.is(r.code, 0, r.stderr)
  const stored = await readLocalStore(out)
  t.is(stored.size, 1024)
  for (const c of [a, b]) for (const [uid, sha] of c.shas) t.is(stored.get(uid)?.sha256, sha, uid)
  let grown = 0
  for (const f of parts) {
    const bytes = fs.readFileSync(path.join(out, f))
    const old = before.get(f)!
    // Appended in place: the old bytes up to the old footer are still there.
    t.true(bytes.subarray(0, old.length - 12).equals(old.subarray(0, old.length - 12)), f)
    if (bytes.length > old.length) grown++
  }
  t.true(grown > 128, `${grown} parts appended to: more than two groups of 64`)
  const verify = await runCli(['verify', '--store', '--base-dir', out, '--n-bits', '8', '--json'], { env: { DES_BACKEND: '', DES_LAYOUT: '' } })
  t.is(verify.code, 0, verify.stderr)
})

test('des pack loads only what its run uses: no S3 SDK, metrics or SSH key reader for a local run, the MIME table once a file has an extension', async (t) => {
  const dir = tempDir()
  // Every module the run loaded, written as it exits (a preload of its own: the test reads what the real command did).
  const loadedList = path.join(dir, 'loaded.txt')
  const preload = path.join(dir, 'list-loaded.js')
  fs.writeFileSync(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(loadedList)}, Object.keys(require.cache).join('\\n')))\n`)
  const packLoading = async (uid: string) => {
    const corpus = makeCorpus(path.join(dir, uid), [{ uid, size: 3000 }])
    const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', path.join(dir, 'out'), '--no-progress'], { env: { NODE_OPTIONS: `--require ${preload}` } })
    t.is(r.code, 0, r.stderr)
    return fs.readFileSync(loadedList, 'utf8').split('\n')
  }
  const has = (loaded: string[], name: string) => loaded.some((f) => f.split(path.sep).includes(name) || path.basename(f, path.extname(f)) === name)

  const plain = await packLoading('no-extension')
  t.true(has(plain, 'planner'), 'the list is of the packer run')
  for (const name of ['mime-types', '@aws-sdk', 'prom-client', 'authorized-keys', 'ssh-public-key']) t.false(has(plain, name), `${name} was loaded`)

  const typed = await packLoading('invoice.json')
  t.true(has(typed, 'mime-types'))
  const stored = await readLocalStore(path.join(dir, 'out'))
  t.is(stored.get('invoice.json')!.meta.content_type, 'application/json')
  t.deepEqual(stored.get('no-extension')!.meta, {})
})

test('des pack without --max-shard-size splits at the original des-pack\'s default, 1000000000 bytes: a key whose shard is past it continues in <HEX>.1.des', async (t) => {
  const dir = tempDir()
  const out = path.join(dir, 'out')
  // An existing shard of key 20240101/1 (n_bits 4) whose data section ends past 1e9 bytes: sparse,
  // one entry (uid 17, 5 bytes stored raw) at offset 1e9.
  fs.mkdirSync(path.join(out, '20240101'), { recursive: true })
  const payload = Buffer.from('hello')
  const at = 1_000_000_000
  const u64 = (n: number) => {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(BigInt(n))
    return b
  }
  const u32 = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(n)
    return b
  }
  const index = Buffer.concat([u32(1), Buffer.from([2, 0]), Buffer.from('17'), Buffer.from([0]), u64(at), u64(5), Buffer.from([0]), u64(5), u64(5), u32(0)])
  const tail = Buffer.concat([payload, index, Buffer.from('DESI'), u64(index.length)])
  const big = path.join(out, '20240101', '1.des')
  const fd = fs.openSync(big, 'w')
  fs.writeSync(fd, Buffer.from([0x44, 0x45, 0x53, 0x32, 2, 0, 0, 0]), 0, 8, 0)
  fs.writeSync(fd, tail, 0, tail.length, at)
  fs.closeSync(fd)
  t.true((await ShardReader.open(big)).has('17'))
  const sizeBefore = fs.statSync(big).size
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: '1', createdAt: '2024-01-01T12:00:00Z', size: 100 }])
  const r = await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out, '--n-bits', '4'])
  t.is(r.code, 0, r.stderr.toString())
  t.is(fs.statSync(big).size, sizeBefore, 'the full shard is left as it was')
  const next = await ShardReader.open(path.join(out, '20240101', '1.1.des'))
  t.is(next.entryCount, 1)
  t.true(next.has('1'))
})
