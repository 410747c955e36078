// The `des` inspection commands as a user runs them.

import test from 'ava'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as http from 'node:http'
import { execFileSync } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import { formatBytes } from '../src/progress'
import { ShardWriter } from '../src/native'
import { runCli } from './helpers/cli'
import { refuseRepeatedFlags } from '../src/cli/flags'
import { boundedLines, TOO_LONG } from '../src/cli/lines'
import { oneLine } from '../src/cli/output'
import { MAX_LINE_BYTES } from '../src/cli/commands/locate'
import { serveMetrics } from '../src/migrate/run'
import { listen } from '../src/serve/server'
import { silentLogger } from '../src/serve/log'
import { loadConfig, loadServeConfig } from '../src/config/env'
import { goldenPath, goldenShards, readJson, sha256 } from './helpers/golden'

test('des locate prints one JSON object with the routing fields', async (t) => {
  const r = await runCli(['locate', '123', '--created-at', '2023-08-14T22:53:32Z', '--n-bits', '11'])
  t.is(r.code, 0, r.stderr)
  t.deepEqual(JSON.parse(r.stdout.toString()), { uid: '123', date_dir: '20230814', shard_index: 123, shard_hex: '7B', object_key: '20230814/7B.des' })
})

test('des locate refuses a uid longer than a shard holds (exit 2, without echoing it), alone or as a line of --stdin', async (t) => {
  const long = 'u'.repeat(65_536)
  const r = await runCli(['locate', long, '--created-at', '2024-01-01T00:00:00Z'])
  t.is(r.code, 2, r.stderr)
  t.regex(r.stderr, /a uid of 65536 bytes is longer than the 65535 a shard can hold/)
  t.false(r.stderr.includes('uuuuuuuuuu'), 'the uid is not echoed')
  t.is(r.stdout.toString(), '')
  const lines = [JSON.stringify({ uid: long, created_at: '2024-01-01T00:00:00Z' }), JSON.stringify({ uid: 'u'.repeat(65_535), created_at: '2024-01-01T00:00:00Z' })].join('\n')
  const s = await runCli(['locate', '--stdin'], { stdin: lines })
  const out = s.stdout.toString().trim().split('\n').map((l) => JSON.parse(l))
  t.regex(out[0].error, /longer than the 65535 a shard can hold/)
  t.is(out[1].shard_hex.length > 0 && out[1].uid.length, 65_535, 'the longest uid a shard holds is located')
})

test('des locate in the flat layout (DES_LAYOUT or --layout) names the reference packer\'s shard of every file of golden/flat-store-offsets', async (t) => {
  const golden = readJson<{ n_bits: number; files: Array<{ uid: string; created_at: string; date_dir: string }> }>(goldenPath('flat-store-offsets', 'expect.json'))
  const input = golden.files.map((f) => JSON.stringify({ uid: f.uid, created_at: f.created_at, n_bits: golden.n_bits })).join('\n') + '\n'
  const shards = new Set(fs.readdirSync(goldenPath('flat-store-offsets')).filter((n) => n.endsWith('_0000.des')))
  for (const run of [{ args: ['--layout', 'flat'], env: {} }, { args: [], env: { DES_LAYOUT: 'flat' } }]) {
    const r = await runCli(['locate', '--stdin', ...run.args], { stdin: input, env: run.env })
    t.is(r.code, 0, r.stderr)
    const out = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l))
    golden.files.forEach((f, i) => {
      t.is(out[i].date_dir, f.date_dir, f.uid)
      t.true(shards.has(out[i].object_key), `${f.uid}: ${out[i].object_key}`)
    })
  }
  const nested = await runCli(['locate', 'doc-1', '--created-at', '2024-03-01T23:30:00-05:00', '--n-bits', '4'])
  t.is(JSON.parse(nested.stdout.toString()).object_key, '20240302/9.des', 'nested keeps the UTC date')
})

test('des locate --stdin answers every golden line and reports bad lines without stopping', async (t) => {
  const lines = fs.readFileSync(goldenPath('routing.jsonl'), 'utf8').split('\n').filter(Boolean)
  const input = lines.slice(0, 400).join('\n') + '\nnot json\n{"uid":"x","created_at":"yesterday"}\n' + lines[400] + '\n'
  const r = await runCli(['locate', '--stdin'], { stdin: input })
  t.is(r.code, 0, r.stderr)
  const out = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l))
  t.is(out.length, 403)
  for (let i = 0; i < 400; i++) {
    const want = JSON.parse(lines[i])
    if (want.error) t.truthy(out[i].error)
    else t.is(out[i].object_key, want.object_key)
  }
  t.regex(out[400].error, /JSON/)
  t.regex(out[401].error, /yesterday/)
  t.is(out[402].object_key, JSON.parse(lines[400]).object_key)
})

test('boundedLines splits where readline does, however the bytes are cut, and gives TOO_LONG for a line past the bound without keeping it', async (t) => {
  const text = Buffer.from('a\r\nbé\rc\n\n' + 'x'.repeat(12) + '\nlast')
  const collect = async (size: number) => {
    const chunks = Array.from({ length: Math.ceil(text.length / size) }, (_, i) => text.subarray(i * size, (i + 1) * size))
    const out: Array<string | typeof TOO_LONG> = []
    for await (const line of boundedLines((async function* () { yield* chunks })(), 8)) out.push(line)
    return out
  }
  for (const size of [1, 2, 3, 5, text.length]) t.deepEqual(await collect(size), ['a', 'bé', 'c', '', TOO_LONG, 'last'], `chunks of ${size}`)
})

test('oneLine leaves no control character nor line separator in a stderr line, C1 and DEL included', (t) => {
  // Line breaks to some readers of logs (NEL, U+2028/9), a terminal's escape (ESC, CSI), DEL.
  const value = 'a\nb\r\u0085c\u2028d\u2029e\u001b[31mf\u009b31mg\u007fh\u0000i'
  const line = oneLine(`bad row: ${value}`)
  t.is(line, 'bad row: a\\nb\\r\\u0085c\\u2028d\\u2029e\\u001b[31mf\\u009b31mg\\u007fh\\u0000i')
  t.false(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(line), JSON.stringify(line))
  t.is(oneLine('plain text, é and 漢字'), 'plain text, é and 漢字')
})

test('des locate --stdin answers a line past its bound with an error, not a crash, and goes on', async (t) => {
  const good = JSON.stringify({ uid: 'b', created_at: '2024-01-01T00:00:00Z' })
  const long = JSON.stringify({ uid: 'a'.repeat(MAX_LINE_BYTES), created_at: '2024-01-01T00:00:00Z' })
  const r = await runCli(['locate', '--stdin'], { stdin: `${long}\n${good}\n` })
  t.is(r.code, 0, r.stderr)
  const out = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l))
  t.deepEqual(out[0], { error: `a line longer than ${MAX_LINE_BYTES} bytes` })
  t.is(out[1].object_key, '20240101/F9.des')
  t.is(out.length, 2)
})

test('des ls --json lists every entry with uid, size, codec, is_bigfile, stored_size, meta', async (t) => {
  for (const { file, expect } of goldenShards()) {
    const r = await runCli(['ls', file, '--json'])
    t.is(r.code, 0, r.stderr)
    const rows = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l))
    t.is(rows.length, expect.entries.length)
    for (const want of expect.entries) {
      const row = rows.find((x) => x.uid === want.uid)
      t.truthy(row, want.uid)
      t.is(row.size, want.size)
      t.is(row.codec, want.codec)
      t.is(row.is_bigfile, want.is_bigfile)
      t.deepEqual(row.meta, want.meta)
      t.is(typeof row.stored_size, 'number')
    }
  }
})

test('des cat writes the exact bytes, BigFiles included', async (t) => {
  const { file, expect } = goldenShards().find((s) => s.expect.entries.some((e) => e.is_bigfile))!
  for (const want of [expect.entries.find((e) => e.is_bigfile)!, expect.entries.find((e) => !e.is_bigfile)!]) {
    const r = await runCli(['cat', file, want.uid])
    t.is(r.code, 0, r.stderr)
    t.is(sha256(r.stdout), want.sha256)
  }
})

test('des cat of an unknown uid exits non-zero with "not found" and no output', async (t) => {
  const r = await runCli(['cat', goldenShards()[0].file, 'no-such-uid'])
  t.not(r.code, 0)
  t.regex(r.stderr, /not found/)
  t.is(r.stdout.length, 0)
  t.notRegex(r.stderr, /\n\s+at /)
})

test('des verify passes good shards and fails a damaged payload, naming the uid', async (t) => {
  for (const { file } of goldenShards()) {
    const r = await runCli(['verify', file])
    t.is(r.code, 0, r.stderr)
  }
  const bad = await runCli(['verify', goldenPath('corrupt-payload', 'zstd-garbage.des')])
  t.is(bad.code, 4)
  t.regex(bad.stderr, /entry "a": .*corrupt/)
})

test('des inspect reports version, entries, sizes, ratio and codecs', async (t) => {
  const file = goldenPath('shards', 'v2-lz4-1.des')
  const r = await runCli(['inspect', file, '--json'])
  t.is(r.code, 0, r.stderr)
  const info = JSON.parse(r.stdout.toString())
  const expect = readJson(file.replace(/\.des$/, '.expect.json'))
  t.is(info.version, 2)
  t.is(info.entries, expect.entries.length)
  t.is(info.file_size, fs.statSync(file).size)
  t.true(info.compression_ratio > 1)
  t.true(info.codecs.lz4 > 0)
})

test('a corrupt shard is one clear line on stderr, non-zero exit, nothing on stdout, no stack', async (t) => {
  for (const name of fs.readdirSync(goldenPath('corrupt'))) {
    const r = await runCli(['ls', goldenPath('corrupt', name)])
    t.not(r.code, 0, name)
    t.is(r.stdout.length, 0, name)
    t.is(r.stderr.trim().split('\n').length, 1, name)
    t.regex(r.stderr, /^des: corrupt shard: /, name)
  }
})

test('--verbose shows the stack of an error', async (t) => {
  const r = await runCli(['ls', goldenPath('corrupt', 'empty.des'), '--verbose'])
  t.not(r.code, 0)
  t.regex(r.stderr, /\n\s+at /)
})

test('a missing file and a bad date are clear errors with distinct exit codes', async (t) => {
  const missing = await runCli(['ls', '/nonexistent/x.des'])
  t.is(missing.code, 3)
  t.regex(missing.stderr, /open \/nonexistent\/x\.des/)
  const date = await runCli(['locate', '1', '--created-at', '2024-02-30T00:00:00Z'])
  t.is(date.code, 2)
  t.regex(date.stderr, /no such calendar date/)
})

test('a flag that takes one value, given twice, is refused by name with exit 2 by every command', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-twice-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const shard = goldenShards()[0].file
  const runs: Array<[string, string[]]> = [
    ['created-at', ['locate', 'doc-0001', '--created-at', '2024-01-01T08:15:00Z', '--created-at', '2024-01-02T08:15:00Z']],
    ['n-bits', ['locate', 'doc-0001', '--created-at', '2024-01-01T08:15:00Z', '--n-bits', '8', '--n-bits', '9']],
    ['layout', ['locate', 'doc-0001', '--created-at', '2024-01-01T08:15:00Z', '--layout', 'flat', '--layout', 'nested']],
    ['base-dir', ['serve', '--port', '0', '--base-dir', dir, '--base-dir', dir]],
    ['base-dir', ['verify', '--store', '--base-dir', dir, '--base-dir', dir]],
    ['input-json', ['pack', '--input-json', 'm.json', '--input-json', 'm.json', '--output-dir', dir]],
    ['bigfiles-prefix', ['cat', shard, 'x', '--bigfiles-prefix', 'a', '--bigfiles-prefix', 'b']],
    ['table', ['stats', '--table', 't', '--table', 't']],
    ['config', ['migrate', '--config', 'x', '--config', 'x']],
    ['base-dir', ['convert', '--base-dir', dir, '--base-dir', dir]],
  ]
  for (const [flag, args] of runs) {
    const r = await runCli(args)
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    t.is(r.stdout.length, 0, args.join(' '))
    t.is(r.stderr, `des: --${flag} was given 2 times: it takes one value\n`, args.join(' '))
  }
})

test('a number flag refuses a value it cannot take with exit 2, naming the flag and echoing what was typed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-numbers-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = path.join(dir, 'migration.yaml')
  fs.writeFileSync(config, `database: {url: "postgres://des:des@127.0.0.1:1/des", table_name: files}\npacker: {output_dir: ${JSON.stringify(dir)}}\n`)
  const store = ['--base-dir', dir]
  const runs: Array<[string[], string, string]> = [
    ...['-1', '70000', 'abc', '1.5'].map((v): [string[], string, string] => [['migrate', '--config', config, '--continuous'], 'metrics-port', v]),
    [['migrate', '--config', config], 'interval', '0'],
    [['migrate', '--config', config], 'interval', 'soon'],
    [['serve', ...store], 'port', 'abc'],
    [['serve', ...store], 'port', '65536'],
    [['serve', ...store], 'workers', '0'],
    [['verify', '--store', ...store], 'parallel', 'abc'],
    [['pack', '--input-json', 'm.json', '--output-dir', dir], 'workers', '2.5'],
  ]
  for (const [args, flag, typed] of runs) {
    const r = await runCli([...args, `--${flag}`, typed])
    const run = `${args[0]} --${flag} ${typed}`
    t.is(r.code, 2, `${run}: ${r.stderr}`)
    t.is(r.stdout.length, 0, run)
    t.regex(r.stderr, new RegExp(`^des: --${flag} "${typed.replace('.', '\\.')}": expected `), run)
  }
})

test('des migrate --metrics-port on a port another process holds exits 2, naming the flag', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-metrics-port-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const config = path.join(dir, 'migration.yaml')
  fs.writeFileSync(config, `database: {url: "postgres://des:des@127.0.0.1:1/des", table_name: files}\npacker: {output_dir: ${JSON.stringify(dir)}}\n`)
  const holder = http.createServer()
  await new Promise<void>((resolve) => holder.listen(0, '0.0.0.0', resolve))
  t.teardown(() => holder.close())
  const port = (holder.address() as AddressInfo).port
  const r = await runCli(['migrate', '--config', config, '--continuous', '--metrics-port', String(port)])
  t.is(r.code, 2, r.stderr)
  t.regex(r.stderr, new RegExp(`port ${port} is in use by another process \\(--metrics-port\\)`))
})

test('the listen-error handlers of des serve and of the migrator\'s metrics server are gone once they listen (a later error is not swallowed)', async (t) => {
  const metricsServer = await serveMetrics(0, '127.0.0.1')
  t.is(metricsServer.listenerCount('error'), 0)
  await new Promise((r) => metricsServer.close(r))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-listen-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const server = await listen({ config: loadConfig({ DES_BASE_DIR: dir }), serve: loadServeConfig({ DES_HOST: '127.0.0.1', DES_PORT: '0', DES_WORKERS: '1' }) }, silentLogger)
  t.is(server.listenerCount('error'), 0)
  await new Promise((r) => server.close(r))
})

test('a flag declared as an array may be given more than once', (t) => {
  t.true(refuseRepeatedFlags({ tag: ['a', 'b'] }, { key: { tag: true }, array: ['tag'] }))
  t.throws(() => refuseRepeatedFlags({ tag: ['a', 'b'] }, { key: { tag: true }, array: [] }), { message: /--tag was given 2 times/ })
})

test('byte counts and rates print as whole bytes below a KiB, with two or one decimals above', (t) => {
  t.is(formatBytes(0), '0 B')
  t.is(formatBytes(882.7305327021971), '883 B')
  t.is(formatBytes(1023.4), '1023 B')
  t.is(formatBytes(1536), '1.50 KiB')
  t.is(formatBytes(253 * 1024 * 1024), '253.0 MiB')
})

test('des ls prints one line per entry: a uid with a tab or a newline is quoted, so it cannot forge a column or a line', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-ls-'))
  const file = path.join(dir, 'x.des')
  const w = ShardWriter.create(file, { codec: 'none' })
  await w.add('plain.txt', Buffer.from('a'))
  await w.add('a\tb\nfake\t999\tnone\t3', Buffer.from('b'))
  await w.finish()
  const r = await runCli(['ls', file])
  t.is(r.code, 0, r.stderr)
  const lines = r.stdout.toString().trimEnd().split('\n')
  t.is(lines.length, 2)
  t.true(lines.every((l) => l.split('\t').length === 4), lines.join(' | '))
  t.true(lines.includes('"a\\tb\\nfake\\t999\\tnone\\t3"\t1\tnone\t1'), lines.join(' | '))
  t.true(lines.includes('plain.txt\t1\tnone\t1'))
})

test('des cat streams a BigFile: one that fails its sha256 stops short of its end (exit 4); a device, a folder or a FIFO in its place is refused unread (exit 4)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'des-cat-'))
  const file = path.join(dir, '20240301', '05.des')
  fs.mkdirSync(path.dirname(file))
  const data = Buffer.alloc(3 << 20, 7)
  const w = ShardWriter.create(file, { codec: 'none', bigFileThreshold: 1000 })
  await w.add('big', data)
  await w.finish()
  const ok = await runCli(['cat', file, 'big'])
  t.is(ok.code, 0, ok.stderr)
  t.true(ok.stdout.equals(data))
  const big = path.join(dir, '20240301', '_bigFiles', sha256(data))
  const flipped = Buffer.from(data)
  flipped[flipped.length - 1] ^= 1
  fs.writeFileSync(big, flipped)
  const bad = await runCli(['cat', file, 'big'])
  t.is(bad.code, 4, bad.stderr)
  t.regex(bad.stderr, /sha256 .* does not match/)
  t.true(bad.stdout.length < data.length, 'the last chunk, with the flipped byte, never comes out')
  // A device never ends, a folder cannot be read, a FIFO's open waits for a writer for ever.
  const kinds: Array<[string, () => void]> = [['a folder', () => fs.mkdirSync(big)]]
  if (fs.existsSync('/dev/zero')) kinds.push(['a device', () => fs.symlinkSync('/dev/zero', big)])
  if (process.platform !== 'win32') kinds.push(['a FIFO', () => execFileSync('mkfifo', [big])])
  for (const [kind, make] of kinds) {
    fs.rmSync(big, { recursive: true, force: true })
    make()
    const r = await runCli(['cat', file, 'big'])
    t.is(r.code, 4, `${kind}: ${r.stderr}`)
    t.regex(r.stderr, /is not a regular file/, kind)
    t.is(r.stdout.length, 0, kind)
  }
})
