// The addon against the reference implementation's vectors.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { locateShard, locateShards, ShardReader } from '../src/native'
import { errorCode } from '../src/errors'
import { GOLDEN, SHARED_GOLDEN, goldenPath, goldenShards, readJson, sha256 } from './helpers/golden'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const addon: typeof import('../index') = require('../index.js')

/** Every file below `dir`, as paths relative to it, sorted. */
function filesBelow(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .sort()
}

test('the fixtures are a byte-identical copy of the shared golden vectors, when those are beside the checkout', (t) => {
  const ours = filesBelow(GOLDEN)
  t.true(ours.length > 100, 'fixtures/golden holds the vectors')
  if (!fs.existsSync(SHARED_GOLDEN)) {
    t.log('no ../shared/golden beside this checkout: the copy is used as it is')
    return
  }
  t.deepEqual(ours, filesBelow(SHARED_GOLDEN))
  for (const f of ours) {
    t.true(fs.readFileSync(path.join(GOLDEN, f)).equals(fs.readFileSync(path.join(SHARED_GOLDEN, f))), f)
  }
})

test('every line of routing.jsonl routes to the same key as the reference', (t) => {
  const lines = fs.readFileSync(goldenPath('routing.jsonl'), 'utf8').split('\n').filter(Boolean)
  t.true(lines.length > 5000)
  for (const line of lines) {
    const c = JSON.parse(line)
    if (c.error) {
      const err = t.throws(() => locateShard(c.uid, c.created_at, c.n_bits), undefined, line)
      t.is(errorCode(err), 'DES_BAD_ARG', line)
      continue
    }
    const loc = locateShard(c.uid, c.created_at, c.n_bits)
    if (loc.objectKey !== c.object_key || loc.shardIndex !== c.shard_index || loc.shardHex !== c.shard_hex) {
      t.fail(`${line} -> ${JSON.stringify(loc)}`)
    }
  }
  t.pass()
})

test('routing.jsonl routed many rows at a time (a plan\'s batch) gives each row its own route; a row that does not route gives null', (t) => {
  const cases = fs
    .readFileSync(goldenPath('routing.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { uid: string; created_at: string; n_bits: number; error?: string; shard_index: number; shard_hex: string; object_key: string })
  for (const nBits of new Set(cases.map((c) => c.n_bits))) {
    const rows = cases.filter((c) => c.n_bits === nBits)
    if (nBits < 4 || nBits > 16) {
      // n_bits is the batch's: out of range, the whole call is refused.
      t.is(errorCode(t.throws(() => locateShards([rows[0].uid], [rows[0].created_at], nBits))), 'DES_BAD_ARG')
      continue
    }
    const routes = locateShards(
      rows.map((c) => c.uid),
      rows.map((c) => c.created_at),
      nBits,
    )
    t.is(routes.length, rows.length)
    rows.forEach((c, i) => {
      const r = routes[i]
      if (c.error) t.is(r, null, JSON.stringify(c))
      else if (!r || `${r.dateDir}/${r.shardHex}.des` !== c.object_key || r.shardIndex !== c.shard_index || r.shardHex !== c.shard_hex) t.fail(`${JSON.stringify(c)} -> ${JSON.stringify(r)}`)
    })
  }
})

for (const { file, expect } of goldenShards()) {
  test(`${path.basename(file)} reads back byte-exact, BigFiles included`, async (t) => {
    const reader = await ShardReader.open(file)
    t.is(reader.version, expect.version)
    t.is(reader.entryCount, expect.entries.length)
    for (const want of expect.entries) {
      const entry = reader.entry(want.uid)
      t.truthy(entry, want.uid)
      t.is(entry!.isBigfile, want.is_bigfile, want.uid)
      t.is(entry!.codec ?? null, want.codec, want.uid)
      t.deepEqual(JSON.parse(entry!.meta), want.meta, want.uid)
      const data = await reader.read(want.uid)
      t.is(data.length, want.size, want.uid)
      t.is(sha256(data), want.sha256, want.uid)
    }
  })
}

test('a tail read holding the index gives the same entries as the whole file', async (t) => {
  for (const { file, expect } of goldenShards()) {
    const bytes = fs.readFileSync(file)
    const whole = await ShardReader.open(file)
    const tail = bytes.subarray(bytes.length - whole.indexSize - 12)
    const fromTail = await ShardReader.fromTail(tail, bytes.length)
    t.is(fromTail.version, expect.version, file)
    for (const want of expect.entries.filter((e) => !e.is_bigfile)) {
      const e = fromTail.entry(want.uid)!
      const stored = bytes.subarray(e.offset!, e.offset! + e.storedSize)
      t.is(sha256(await fromTail.decode(want.uid, stored)), want.sha256)
    }
  }
})

test('a tail that misses the index start is refused with DES_NEED_MORE', async (t) => {
  const file = goldenShards()[0].file
  const bytes = fs.readFileSync(file)
  const err = await t.throwsAsync(ShardReader.fromTail(bytes.subarray(bytes.length - 12), bytes.length))
  t.is(errorCode(err), 'DES_NEED_MORE')
})

for (const name of fs.readdirSync(goldenPath('corrupt'))) {
  test(`corrupt/${name} is refused when opened, with a clear DES_CORRUPT error`, async (t) => {
    const err = await t.throwsAsync(ShardReader.open(goldenPath('corrupt', name)))
    t.is(errorCode(err), 'DES_CORRUPT')
    t.regex(err!.message, /corrupt shard: .{10,}/)
    t.notRegex(err!.message, /panick/)
  })
}

test('a damaged zstd payload fails to decode and returns no bytes', async (t) => {
  const reader = await ShardReader.open(goldenPath('corrupt-payload', 'zstd-garbage.des'))
  const err = await t.throwsAsync(reader.read('a'))
  t.is(errorCode(err), 'DES_CORRUPT')
  t.regex(err!.message, /"a"/)
  const report = await reader.verify()
  t.is(report.ok, report.entries - 1)
  t.is(report.problems[0].uid, 'a')
})

test('every file of the reference flat store is found in one of its shards', async (t) => {
  const dir = goldenPath('flat-store')
  const expect = readJson(path.join(dir, 'expect.json'))
  const readers = await Promise.all(fs.readdirSync(dir).filter((f) => f.endsWith('.des')).map((f) => ShardReader.open(path.join(dir, f))))
  for (const want of expect.files) {
    const reader = readers.find((r) => r.has(want.uid))
    t.truthy(reader, want.uid)
    t.is(sha256(await reader!.read(want.uid)), want.sha256)
  }
})

// The hot path hands entries and locations over as rows; they must build the
// very objects the addon's object-returning calls give.
test('entry rows and location rows make the same objects as the addon does', (t) => {
  let entries = 0
  for (const { file } of goldenShards()) {
    const reader = ShardReader.openSync(file)
    for (const e of reader.native.entries()) {
      t.deepEqual(reader.entry(e.uid), e, `${path.basename(file)} ${e.uid}`)
      entries++
    }
    t.is(reader.entry('no such uid'), null)
  }
  t.true(entries > 50)
  const lines = fs.readFileSync(goldenPath('routing.jsonl'), 'utf8').split('\n').filter(Boolean).slice(0, 500)
  for (const line of lines) {
    const c = JSON.parse(line)
    if (!c.error) t.deepEqual(locateShard(c.uid, c.created_at, c.n_bits), addon.locateShard(String(c.uid), c.created_at, c.n_bits), line)
  }
})
