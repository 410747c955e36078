// Every DES_* variable is honoured by each command it concerns (docs/CLI.md,
// "Which variables each command reads"), and flags win over it. `des serve`'s
// store flags are in serve-ops.spec.ts, the migration config's defaults in
// migrate-config.spec.ts. Needs `npx tsc` first; `des stats` the real PostgreSQL.

import test from 'ava'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { locateShard } from '../src/native'
import { runCli } from './helpers/cli'
import { goldenShards, sha256 } from './helpers/golden'
import { freshTable, makeFiles, writeConfig } from './helpers/migrate'
import { cachedBytes, makeCorpus, noCacheView, shardFiles } from './helpers/pack'
import { pgTestUrl } from './helpers/services'

test('des locate routes with DES_N_BITS; --n-bits wins', async (t) => {
  const uid = 'invoice-17'
  const at = '2023-08-14T22:53:32Z'
  const key = (nBits: number) => locateShard(uid, at, nBits).objectKey
  t.not(key(11), key(8), 'the bits make a difference for this uid')
  const args = ['locate', uid, '--created-at', at]
  const byEnv = await runCli(args, { env: { DES_N_BITS: '11' } })
  t.is(byEnv.code, 0, byEnv.stderr)
  t.is(JSON.parse(byEnv.stdout.toString()).object_key, key(11))
  t.is(JSON.parse((await runCli(args, { env: { DES_N_BITS: '' } })).stdout.toString()).object_key, key(8), 'unset: 8')
  t.is(JSON.parse((await runCli([...args, '--n-bits', '11'], { env: { DES_N_BITS: '4' } })).stdout.toString()).object_key, key(11))
  const stdin = await runCli(['locate', '--stdin'], { env: { DES_N_BITS: '11' }, stdin: JSON.stringify({ uid, created_at: at }) + '\n' })
  t.is(JSON.parse(stdin.stdout.toString()).object_key, key(11), '--stdin lines without n_bits take DES_N_BITS')
  const bad = await runCli(args, { env: { DES_N_BITS: 'many' } })
  t.is(bad.code, 2)
  t.regex(bad.stderr, /DES_N_BITS="many" is invalid/)
})

test('des locate refuses --n-bits that DES_N_BITS and des pack refuse, echoing what was typed', async (t) => {
  const args = ['locate', 'doc-0001', '--created-at', '2024-01-01T08:15:00Z']
  for (const typed of ['8.5', 'x', '3', '17']) {
    const r = await runCli([...args, '--n-bits', typed])
    t.is(r.code, 2, `--n-bits ${typed}: ${r.stdout}`)
    t.is(r.stdout.length, 0, `--n-bits ${typed}: nothing routed`)
    t.is(r.stderr, `des: --n-bits "${typed}": expected a whole number 4..16\n`)
    const pack = await runCli(['pack', '--input-json', 'm.json', '--output-dir', 'out', '--n-bits', typed])
    t.is(pack.stderr, r.stderr, 'des pack says the same')
  }
  t.is((await runCli(args, { env: { DES_N_BITS: '8.5' } })).code, 2)
})

/** A golden shard with a BigFile, copied beside its BigFiles under another folder name. */
function shardWithBlobsIn(folder: string): { file: string; uid: string; sha: string } {
  const { file, expect } = goldenShards().find((s) => s.expect.entries.some((e) => e.is_bigfile))!
  const big = expect.entries.find((e) => e.is_bigfile)!
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-env-'))
  fs.copyFileSync(file, path.join(dir, 'x.des'))
  fs.cpSync(path.join(path.dirname(file), '_bigFiles'), path.join(dir, folder), { recursive: true })
  return { file: path.join(dir, 'x.des'), uid: big.uid, sha: big.sha256 }
}

test('des cat finds BigFiles in DES_BIGFILES_PREFIX; --bigfiles-prefix wins', async (t) => {
  const s = shardWithBlobsIn('_blobs')
  const byEnv = await runCli(['cat', s.file, s.uid], { env: { DES_BIGFILES_PREFIX: '_blobs' } })
  t.is(byEnv.code, 0, byEnv.stderr)
  t.is(sha256(byEnv.stdout), s.sha)
  const byDefault = await runCli(['cat', s.file, s.uid], { env: { DES_BIGFILES_PREFIX: '' } })
  t.not(byDefault.code, 0, 'not in _bigFiles')
  t.is(byDefault.stdout.length, 0)
  const byFlag = await runCli(['cat', s.file, s.uid, '--bigfiles-prefix', '_blobs'], { env: { DES_BIGFILES_PREFIX: '_other' } })
  t.is(sha256(byFlag.stdout), s.sha)
})

test('des verify SHARD checks BigFiles in DES_BIGFILES_PREFIX; --bigfiles-prefix wins', async (t) => {
  const s = shardWithBlobsIn('_blobs')
  const byEnv = await runCli(['verify', s.file], { env: { DES_BIGFILES_PREFIX: '_blobs' } })
  t.is(byEnv.code, 0, byEnv.stderr)
  const byDefault = await runCli(['verify', s.file], { env: { DES_BIGFILES_PREFIX: '' } })
  t.not(byDefault.code, 0, 'its BigFile is not in _bigFiles')
  const byFlag = await runCli(['verify', s.file, '--bigfiles-prefix', '_blobs'], { env: { DES_BIGFILES_PREFIX: '_other' } })
  t.is(byFlag.code, 0, byFlag.stderr)
})

const cacheViewMissing = noCacheView(os.tmpdir())

;(cacheViewMissing ? test.skip : test)('des pack writes a local store past the page cache; DES_WRITE_PAST_CACHE=false writes it through', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-cli-env-'))
  const corpus = makeCorpus(path.join(dir, 'src'), Array.from({ length: 8 }, (_, i) => ({ uid: `f${i}.bin`, kind: 'random' as const, size: 256 << 10 })))
  const manifest = path.join(dir, 'manifest.json')
  fs.writeFileSync(manifest, JSON.stringify(corpus.rows))
  const cachedIn = async (name: string, env: NodeJS.ProcessEnv) => {
    const out = path.join(dir, name)
    const r = await runCli(['pack', '--input-json', manifest, '--output-dir', out, '--n-bits', '4', '--no-progress'], { env })
    t.is(r.code, 0, r.stderr.toString())
    const shards = shardFiles(out).map((f) => path.join(out, f))
    const cached = cachedBytes(shards)
    return { cached: cached.reduce((a, b) => a + b, 0), size: shards.reduce((a, f) => a + fs.statSync(f).size, 0), shards: shards.length }
  }
  const past = await cachedIn('past', { DES_WRITE_PAST_CACHE: '' })
  const through = await cachedIn('through', { DES_WRITE_PAST_CACHE: 'false' })
  t.true(past.size > 2 << 20 && past.size === through.size)
  t.true(past.cached <= past.shards * 8192, `by default ${past.cached} of ${past.size} bytes are cached`)
  // More than half, not all: a shared host's kernel may take some pages back before fincore looks.
  t.true(through.cached * 2 > through.size, `DES_WRITE_PAST_CACHE=false: ${through.cached} of ${through.size} bytes are cached`)
  const bad = await runCli(['pack', '--input-json', manifest, '--output-dir', path.join(dir, 'bad'), '--no-progress'], { env: { DES_WRITE_PAST_CACHE: 'maybe' } })
  t.not(bad.code, 0)
  t.regex(bad.stderr.toString(), /DES_WRITE_PAST_CACHE="maybe" is invalid/)
  fs.rmSync(dir, { recursive: true, force: true })
})

test('des stats takes the database from DES_DB_URL or from a migration config (no password on the command line)', async (t) => {
  const table = await freshTable('stats-env')
  try {
    const rows = makeFiles(table.dir, 5)
    await table.insert(rows)
    const cutoff = '2030-01-01T00:00:00Z'
    const viaEnv = await runCli(['stats', '--table', table.table, '--cutoff', cutoff, '--json'], { env: { DES_DB_URL: pgTestUrl() } })
    t.is(viaEnv.code, 0, viaEnv.stderr)
    const s = JSON.parse(viaEnv.stdout.toString())
    t.is(s.count, 5)
    t.is(s.total_bytes, rows.reduce((n, r) => n + r.size, 0))
    // The config file names database, table and (here) an age that covers the rows.
    const config = writeConfig(table.dir, { database: { url: '${STATS_DB}', table_name: table.table }, migration: { archive_age_days: 1 }, packer: { output_dir: path.join(table.dir, 'out') } }, 'yaml', 'stats')
    const viaConfig = await runCli(['stats', '--config', config, '--json'], { env: { STATS_DB: pgTestUrl(), DES_DB_URL: '' } })
    t.is(viaConfig.code, 0, viaConfig.stderr)
    t.is(JSON.parse(viaConfig.stdout.toString()).count, 5)
    const none = await runCli(['stats', '--table', table.table, '--cutoff', cutoff], { env: { DES_DB_URL: '' } })
    t.is(none.code, 2)
    t.regex(none.stderr, /DES_DB_URL/)
  } finally {
    await table.close()
  }
})

test('DES_MAX_PAYLOAD_BYTES reaches des cat and des verify (the addon\'s ceiling is set for every command, not only serve)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-ceiling-'))
  const corpus = makeCorpus(path.join(dir, 'src'), [{ uid: 'five-k', kind: 'random', size: 5000 }])
  const out = path.join(dir, 'out')
  t.is((await runCli(['pack', '--input-json', corpus.manifestPath, '--output-dir', out, '--codec', 'none'])).code, 0)
  const [shard] = shardFiles(out).map((k) => path.join(out, k))
  // Within the default ceiling: read and checked.
  const cat = await runCli(['cat', shard, 'five-k'])
  t.is(cat.code, 0, cat.stderr)
  t.is(sha256(cat.stdout), corpus.shas.get('five-k'))
  t.is((await runCli(['verify', shard])).code, 0)
  // A ceiling below the entry: both refuse it, naming the variable.
  for (const args of [['cat', shard, 'five-k'], ['verify', shard], ['verify', '--store', '--base-dir', out]]) {
    const r = await runCli(args, { env: { DES_MAX_PAYLOAD_BYTES: '1000' } })
    t.is(r.code, 4, `${args[0]}: ${r.stderr}`)
    t.regex(r.stderr + r.stdout.toString(), /over the payload ceiling of 1000 bytes \(DES_MAX_PAYLOAD_BYTES\)/, args.join(' '))
  }
})
