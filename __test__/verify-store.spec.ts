// `des verify --store`: a whole store checked as a user runs it (the built
// CLI), on local disk (nested and flat) and on the real MinIO (bucket/prefix
// and zones). Each damage is made on a copy of a clean store and must be
// named, with its object's key, in the --json report; exit 4.

import test from 'ava'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { runCli } from './helpers/cli'
import { goldenPath } from './helpers/golden'
import { asInputs, makeCorpus, tempDir } from './helpers/pack'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import type { S3Client } from '@aws-sdk/client-s3'
import { recordingClient } from './helpers/backends'
import { uploadDir } from './helpers/store'
import { packFiles } from '../src/pack'
import { ShardReader, ShardWriter } from '../src/native'
import { LocalSource } from '../src/storage/local'
import { S3Source } from '../src/storage/s3'
import { classifyKey, scrub, type ObjectReport } from '../src/verify'

const N_BITS = 4
/** uids of shard `shard` (n_bits 4): 16k + shard. */
const inShard = (shard: number, n: number, from = 0) => Array.from({ length: n }, (_, i) => String(16 * (from + i) + shard))

interface Report {
  code: number
  lines: Array<ObjectReport & { status: string }>
  summary: Record<string, number | string>
  stdout: string
  stderr: string
}

async function verifyStore(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Report> {
  const r = await runCli(['verify', '--store', '--json', ...args], { env: { DES_BACKEND: '', DES_BASE_DIR: '', DES_LAYOUT: '', DES_N_BITS: '', ...env } })
  const stdout = r.stdout.toString()
  const parsed = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
  const last = parsed.pop()
  return { code: r.code, lines: parsed, summary: last?.summary, stdout, stderr: r.stderr }
}

/** The findings of one kind, with their object's key. */
function found(report: Report, kind: string): Array<{ key: string; message: string; uid?: string | null; count?: number }> {
  return report.lines.flatMap((l) => l.findings.filter((f) => f.kind === kind).map((f) => ({ key: l.key, message: f.message, uid: f.uid, count: f.count })))
}

function errors(report: Report): string[] {
  return report.lines.flatMap((l) => l.findings.filter((f) => f.severity === 'error').map((f) => `${l.key}: ${f.kind}`))
}

/**
 * A nested store packed by the packer: two dates, shards 1, 3, 5 and 7 only
 * (so 2 is free), shard 5 continued over several parts, and one BigFile that
 * two entries share.
 */
async function packedStore(codec: 'zstd' | 'none' = 'zstd'): Promise<string> {
  const dir = tempDir('des-verify-store-')
  const specs = [
    ...inShard(1, 6).map((uid) => ({ uid, size: 3000 + (Number(uid) % 700), createdAt: '2024-03-01T10:00:00Z' })),
    ...inShard(3, 6).map((uid) => ({ uid, size: 2500, createdAt: '2024-03-02T10:00:00Z' })),
    ...inShard(5, 12).map((uid) => ({ uid, kind: 'random' as const, size: 3000, createdAt: '2024-03-01T10:00:00Z' })),
    ...inShard(7, 4).map((uid) => ({ uid, size: 1800, createdAt: '2024-03-01T10:00:00Z' })),
  ]
  const corpus = makeCorpus(path.join(dir, 'src'), specs)
  // The BigFile: one content under two uids (one object, two references).
  const big = path.join(dir, 'src', 'big.bin')
  fs.writeFileSync(big, Buffer.alloc(40_000, 7))
  const inputs = [
    ...asInputs(corpus.rows),
    { uid: inShard(1, 1, 100)[0], createdAt: '2024-03-01T11:00:00Z', source: big },
    { uid: inShard(7, 1, 100)[0], createdAt: '2024-03-01T11:00:00Z', source: big },
  ]
  await packFiles(inputs, { kind: 'local', dir: path.join(dir, 'store') }, { nBits: N_BITS, codec, bigFileThreshold: 20_000, maxShardSize: 10_000 })
  return path.join(dir, 'store')
}

let clean: Promise<string> | undefined
/** A fresh copy of the packed store, to damage. */
async function copyOfStore(): Promise<string> {
  clean ??= packedStore()
  const to = tempDir('des-verify-copy-')
  fs.cpSync(await clean, to, { recursive: true })
  return to
}

function flipByte(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+')
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, at)
  b[0] ^= 0x5a
  fs.writeSync(fd, b, 0, 1, at)
  fs.closeSync(fd)
}

/** Flips a byte in the middle of the first inline entry's stored bytes. */
async function flipEntryByte(file: string): Promise<string> {
  const reader = await ShardReader.open(file)
  const e = reader.entries().find((x) => !x.isBigfile)!
  flipByte(file, e.offset! + Math.floor(e.storedSize / 2))
  return e.uid
}

function bigfileOf(store: string): string {
  const dir = path.join(store, '20240301', '_bigFiles')
  return path.join(dir, fs.readdirSync(dir)[0])
}

test('keys are told apart by name: shard parts, BigFiles, locks, temp files, and .des names no reader asks for', (t) => {
  const nested = (k: string, nBits = 8) => classifyKey(k, 'nested', nBits, '_bigFiles')
  t.deepEqual(nested('20240301/5C.des'), { type: 'shard', layout: 'nested', dateDir: '20240301', shardHex: '5C', shardIndex: 0x5c, part: 0 })
  t.like(nested('20240301/5C.12.des'), { type: 'shard', part: 12 })
  t.like(nested('20240301/3FF.des', 10), { type: 'shard', shardIndex: 1023 })
  t.like(nested('20240301/05.des', 10), { type: 'shard', shardIndex: 5 })
  // Years the packer writes, 0000–0099 included (Date.UTC would take 0042 for 1942).
  for (const day of ['00000101', '00420601', '00990228', '00040229', '99991231']) t.like(nested(`${day}/5C.des`), { type: 'shard', dateDir: day }, day)
  t.like(nested(`20240301/_bigFiles/${'ab'.repeat(32)}`), { type: 'bigfile' })
  t.like(nested('20240301/5C.des.lock'), { type: 'lock' })
  t.like(nested('20240301/.des-tmp-Xy12.part'), { type: 'temp' })
  t.like(nested('20240301/notes.txt'), { type: 'other' })
  for (const bad of ['20240301/5c.des', '20240301/5C0.des', '20240301/C.des', '20240230/5C.des', '01000229/5C.des', '00421301/5C.des', '20240301/5C.0.des', '20240301/5C.01.des', '5C.des', '20240301_5C_0000.des', 'a/b/5C.des']) {
    t.is(nested(bad).type, 'misnamed', bad)
  }
  const flat = (k: string) => classifyKey(k, 'flat', 4, '_bigFiles')
  t.deepEqual(flat('20240301_A_0002.des'), { type: 'shard', layout: 'flat', dateDir: '20240301', shardHex: 'A', shardIndex: 10, part: 2 })
  t.like(flat(`_bigFiles/${'0f'.repeat(32)}`), { type: 'bigfile' })
  for (const bad of ['20240301_A_002.des', '20240301_0A_0000.des', '20240301/A.des', '20240301_A_00002.des']) t.is(flat(bad).type, 'misnamed', bad)
})

test('a temp file is a note for its first hour and a warning after (clock injected)', async (t) => {
  const dir = tempDir('des-verify-clock-')
  fs.mkdirSync(path.join(dir, '20240301'))
  const file = path.join(dir, '20240301', '.des-tmp-a.part')
  fs.writeFileSync(file, 'x')
  const written = fs.statSync(file).mtimeMs
  const kinds = async (minutes: number) => {
    const seen: string[] = []
    await scrub({
      roots: [{ source: new LocalSource(dir), owns: () => true }],
      layout: 'nested',
      nBits: 8,
      bigfilesPrefix: '_bigFiles',
      tailBytes: 65536,
      parallel: 1,
      now: () => written + minutes * 60_000,
      onObject: (r) => void seen.push(...r.findings.map((f) => `${f.severity} ${f.kind}`)),
    })
    return seen
  }
  t.deepEqual(await kinds(59), ['note temp'])
  t.deepEqual(await kinds(61), ['warning stale-temp'])
})

test('a clean packed store verifies with exit 0: every object reported once, the summary counts them, a shared BigFile is read once', async (t) => {
  const store = await copyOfStore()
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 0, r.stderr)
  t.is(r.stderr, '')
  t.deepEqual(errors(r), [])
  const keys = r.lines.map((l) => l.key)
  t.is(new Set(keys).size, keys.length, 'one line per object')
  const shards = r.lines.filter((l) => l.type === 'shard')
  t.true(shards.some((l) => l.key === '20240301/5.2.des'), 'continuation parts are checked')
  t.true(shards.every((l) => l.status === 'ok' && l.checksummed === true))
  const bigfiles = r.lines.filter((l) => l.type === 'bigfile')
  t.is(bigfiles.length, 1)
  t.is(bigfiles[0].refs, 2)
  t.is(bigfiles[0].bytes, 40_000)
  t.true(r.lines.filter((l) => l.type === 'other').every((l) => l.findings[0].kind === 'lock' && l.status === 'note'))
  const s = r.summary
  t.is(s.shards, shards.length)
  t.is(s.bigfiles, 1)
  t.is(s.objects, r.lines.length)
  t.is(s.entries, 30)
  t.is(s.problems, 0)
  t.is(s.bytes, shards.reduce((n, l) => n + l.bytes, 0) + 40_000)
  for (const k of ['seconds', 'mib_per_s', 'objects_per_s']) t.is(typeof s[k], 'number', k)
  t.false(r.stdout.includes(store), 'no machine path in the report')

  const text = await runCli(['verify', '--store', '--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(text.code, 0, text.stderr)
  t.regex(text.stdout.toString(), /^verified \d+ objects \(\d+ shards, 30 entries; 1 BigFiles; \d+ other\), .* 0 problems, 0 warnings, \d+ notes/)
})

test('a byte flipped in a zstd entry is a corrupt finding on its shard, naming the uid: exit 4', async (t) => {
  const store = await copyOfStore()
  const uid = await flipEntryByte(path.join(store, '20240301', '1.des'))
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240301/1.des: corrupt'])
  t.is(found(r, 'corrupt')[0].uid, uid)
  t.regex(r.stderr, /^des: 1 problem found in \d+ objects\n$/)
})

test('a byte flipped in a codec-none entry is found by its checksum', async (t) => {
  const store = await packedStore('none')
  const uid = await flipEntryByte(path.join(store, '20240302', '3.des'))
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240302/3.des: corrupt'])
  t.is(found(r, 'corrupt')[0].uid, uid)
  t.regex(found(r, 'corrupt')[0].message, /checksum/)
})

test('a device (a link to /dev/zero, which never ends) or a FIFO in place of a BigFile is reported missing, never read', async (t) => {
  if (!fs.existsSync('/dev/zero')) return t.pass('no /dev/zero here')
  const store = await copyOfStore()
  const big = bigfileOf(store)
  // Only regular files are objects of a local store: the FIFO is not opened (its open would wait for a writer).
  for (const [kind, make] of [['a device', () => fs.symlinkSync('/dev/zero', big)], ['a FIFO', () => execFileSync('mkfifo', [big])]] as const) {
    fs.rmSync(big)
    make()
    const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
    t.is(r.code, 4, kind)
    t.regex(found(r, 'bigfile-missing')[0]?.message ?? '', /^missing: referenced by/, kind)
  }
})

test('a folder linked back up to one above it is not walked again and again', async (t) => {
  const store = await copyOfStore()
  const clean = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  fs.symlinkSync('..', path.join(store, '20240301', 'up'))
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, clean.code, r.stderr)
  t.is(r.summary.objects, clean.summary.objects, 'the same objects, none of them through the link')
})

test('a date folder or a shard behind a link whose target is gone (a disk unmounted) is unreadable, not skipped: exit 6', async (t) => {
  const store = await copyOfStore()
  const elsewhere = tempDir('des-verify-disk-')
  fs.renameSync(path.join(store, '20240301'), path.join(elsewhere, '20240301'))
  fs.symlinkSync(path.join(elsewhere, '20240301'), path.join(store, '20240301'))
  t.is((await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])).code, 0, 'read through the link while its disk is there')
  fs.rmSync(elsewhere, { recursive: true })
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 6, r.stderr)
  t.deepEqual(errors(r), ['20240301: unreadable'])
  t.regex(found(r, 'unreadable')[0].message, /a link whose target cannot be reached \(ENOENT\)/)
  t.false(JSON.stringify(r.lines).includes(elsewhere), 'the link\'s target is not named')
})

test('a link whose target is gone at a name no reader looks up (an editor\'s lock link) is a note, not an unreadable store', async (t) => {
  const store = await copyOfStore()
  fs.symlinkSync('someone@host.4242:1700000000', path.join(store, '.#notes.txt'))
  fs.symlinkSync(path.join(store, 'gone'), path.join(store, '20240301', 'README'))
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 0, r.stderr)
  t.deepEqual(errors(r), [])
  t.deepEqual(
    found(r, 'other')
      .filter((f) => /link/.test(f.message))
      .map((f) => [f.key, f.message]),
    [
      ['.#notes.txt', 'a link whose target cannot be reached (ENOENT), at a name no reader looks up'],
      ['20240301/README', 'a link whose target cannot be reached (ENOENT), at a name no reader looks up'],
    ],
  )
  // At a name the store uses, the same link is an unreadable object.
  fs.symlinkSync(path.join(store, 'gone'), path.join(store, '20240301', 'A.des'))
  t.deepEqual(errors(await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])), ['20240301/A.des: unreadable'])
})

test('a shard whose index does not read is corrupt, not counted among the shards without checksums', async (t) => {
  const store = await copyOfStore()
  const shard = path.join(store, '20240301', '5.1.des')
  flipByte(shard, fs.statSync(shard).size - 30)
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240301/5.1.des: corrupt'])
  t.is(r.summary.unchecksummed_shards, 0)
})

test('a flipped BigFile is one problem on its object, however many entries share it', async (t) => {
  const store = await copyOfStore()
  const big = bigfileOf(store)
  flipByte(big, 1234)
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  const key = `20240301/_bigFiles/${path.basename(big)}`
  t.deepEqual(errors(r), [`${key}: bigfile-corrupt`])
  t.regex(found(r, 'bigfile-corrupt')[0].message, /sha256 .* does not match/)
  t.is(r.lines.find((l) => l.key === key)!.refs, 2)
})

test('a deleted BigFile is reported missing under its key, with an entry that needs it', async (t) => {
  const store = await copyOfStore()
  const big = bigfileOf(store)
  fs.rmSync(big)
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  const key = `20240301/_bigFiles/${path.basename(big)}`
  t.deepEqual(errors(r), [`${key}: bigfile-missing`])
  t.regex(found(r, 'bigfile-missing')[0].message, /referenced by uid "\d+" in 20240301\/[17]\.des and 1 more/)
})

test('a shard renamed to another HEX is misplaced: its entries route elsewhere and can never be found', async (t) => {
  const store = await copyOfStore()
  fs.renameSync(path.join(store, '20240302', '3.des'), path.join(store, '20240302', '2.des'))
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240302/2.des: misplaced'])
  const f = found(r, 'misplaced')[0]
  t.is(f.count, 6)
  t.regex(f.message, /6 of 6 entries route to another shard .*"3" → 3/)
})

test('a missing part before later ones is a part gap on each part after it', async (t) => {
  const store = await copyOfStore()
  const parts = fs.readdirSync(path.join(store, '20240301')).filter((f) => /^5(\.\d+)?\.des$/.test(f))
  t.true(parts.length >= 3, `shard 5 has ${parts.length} parts`)
  fs.rmSync(path.join(store, '20240301', '5.1.des'))
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  const gaps = found(r, 'part-gap')
  t.deepEqual(
    gaps.map((g) => g.key),
    parts.filter((p) => !['5.des', '5.1.des'].includes(p)).map((p) => `20240301/${p}`).sort((a, b) => a.localeCompare(b, 'en', { numeric: true })),
  )
  t.regex(gaps[0].message, /part 1 \(20240301\/5\.1\.des\) is missing: readers stop at the first missing part/)
  t.deepEqual([...new Set(errors(r).map((e) => e.split(': ')[1]))], ['part-gap'])
})

test('a uid in two parts of one key is a duplicate on the later part', async (t) => {
  const store = await copyOfStore()
  const first = (await ShardReader.open(path.join(store, '20240301', '7.des'))).entries()[0].uid
  const w = ShardWriter.create(path.join(store, '20240301', '7.1.des'))
  await w.add(first, Buffer.from('another copy'))
  await w.finish()
  const r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240301/7.1.des: duplicate-uid'])
  t.regex(found(r, 'duplicate-uid')[0].message, new RegExp(`"${first}" also in 20240301/7\\.des`))
})

test('files that are not shards are notes; a temp file over an hour old is a warning; a .des at a name no reader asks for is a problem', async (t) => {
  const store = await copyOfStore()
  fs.writeFileSync(path.join(store, 'README.txt'), 'hello')
  const fresh = path.join(store, '20240301', '.des-tmp-fresh.part')
  const old = path.join(store, '20240302', '.des-tmp-old.part')
  fs.writeFileSync(fresh, 'x')
  fs.writeFileSync(old, 'x')
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000)
  fs.utimesSync(old, twoHoursAgo, twoHoursAgo)
  let r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 0, r.stderr)
  t.deepEqual(found(r, 'other').map((f) => f.key), ['README.txt'])
  t.deepEqual(found(r, 'temp').map((f) => f.key), ['20240301/.des-tmp-fresh.part'])
  t.deepEqual(found(r, 'stale-temp').map((f) => f.key), ['20240302/.des-tmp-old.part'])
  t.is(r.summary.warnings, 1)

  fs.copyFileSync(path.join(store, '20240301', '7.des'), path.join(store, '20240301', '07.des'))
  r = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240301/07.des: misnamed'])
})

test('the flat layout: the reference packer\'s store verifies clean; a missing _0000 and a flipped BigFile are named', async (t) => {
  const store = tempDir('des-verify-flat-')
  fs.cpSync(goldenPath('flat-store'), store, { recursive: true })
  let r = await verifyStore(['--base-dir', store, '--layout', 'flat', '--n-bits', '4'])
  t.is(r.code, 0, r.stderr)
  t.deepEqual(found(r, 'other').map((f) => f.key), ['expect.json'])
  t.is(r.summary.bigfiles, 3)
  t.is(r.summary.unchecksummed_shards, r.summary.shards, "the reference's shards carry no checksums")
  t.true(r.lines.some((l) => l.key === '20240301_5_0001.des' && l.part === 1))

  // Read as nested, nothing is where a reader would look.
  const nested = await verifyStore(['--base-dir', store, '--n-bits', '4'])
  t.is(nested.code, 4)
  t.true(errors(nested).every((e) => e.endsWith(': misnamed')))

  fs.rmSync(path.join(store, '20240301_5_0000.des'))
  const big = fs.readdirSync(path.join(store, '_bigFiles'))[0]
  flipByte(path.join(store, '_bigFiles', big), 10)
  r = await verifyStore(['--base-dir', store, '--layout', 'flat', '--n-bits', '4'])
  t.is(r.code, 4)
  t.deepEqual(errors(r).sort(), ['20240301_5_0001.des: part-gap', `_bigFiles/${big}: bigfile-corrupt`])
  t.regex(found(r, 'part-gap')[0].message, /part 0 \(20240301_5_0000\.des\) is missing/)
})

test('a store being converted (readers try nested, then flat) verifies clean with both layouts, and not with one', async (t) => {
  const store = await copyOfStore()
  for (const f of fs.readdirSync(goldenPath('flat-store'))) {
    if (f.endsWith('.des')) fs.copyFileSync(goldenPath('flat-store', f), path.join(store, f))
  }
  fs.cpSync(goldenPath('flat-store', '_bigFiles'), path.join(store, '_bigFiles'), { recursive: true })
  const run = async (readLayouts: Array<'nested' | 'flat'>) => {
    const found: string[] = []
    const summary = await scrub({
      roots: [{ source: new LocalSource(store), owns: () => true }],
      layout: readLayouts[0],
      readLayouts,
      nBits: N_BITS,
      bigfilesPrefix: '_bigFiles',
      tailBytes: 65536,
      parallel: 2,
      onObject: (r) => void found.push(...r.findings.filter((f) => f.severity === 'error').map((f) => `${r.key}: ${f.kind}`)),
    })
    return { summary, found }
  }
  const both = await run(['nested', 'flat'])
  t.deepEqual(both.found, [])
  t.is(both.summary.bigfiles, 4, 'the nested BigFile and the three flat ones')
  t.is(both.summary.entries, 30 + 120)
  const nestedOnly = await run(['nested'])
  t.true(nestedOnly.found.length > 0)
  t.true(nestedOnly.found.every((f) => /^\d{8}_[0-9A-F]_\d{4}\.des: misnamed$/.test(f)), nestedOnly.found.join('\n'))
})

test('bad arguments exit 2; an unreachable store exits 6', async (t) => {
  const store = await copyOfStore()
  const both = await runCli(['verify', 'x.des', '--store'])
  t.is(both.code, 2)
  t.regex(both.stderr, /not both/)
  const neither = await runCli(['verify'])
  t.is(neither.code, 2)
  const bits = await runCli(['verify', '--store', '--base-dir', store, '--n-bits', '3'])
  t.is(bits.code, 2)
  t.regex(bits.stderr, /--n-bits "3"/)
  const layout = await runCli(['verify', '--store', '--base-dir', store, '--layout', 'diagonal'])
  t.is(layout.code, 2)
  const parallel = await runCli(['verify', '--store', '--base-dir', store, '--parallel', '0'])
  t.is(parallel.code, 2)
  const dirGone = await runCli(['verify', '--store', '--base-dir', path.join(store, 'nope')])
  t.is(dirGone.code, 6)
  t.is(dirGone.stdout.length, 0)
  t.false(dirGone.stderr.includes(store), dirGone.stderr)
  const s3Down = await runCli(['verify', '--store', '--json'], {
    env: { DES_BACKEND: 's3', DES_S3_BUCKET: 'nothing-here', DES_S3_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' },
  })
  t.is(s3Down.code, 6, s3Down.stderr)
  t.regex(s3Down.stderr, /unreachable/)
  t.is(s3Down.stderr.trim().split('\n').length, 1)
})

test('des verify SHARD still checks one file', async (t) => {
  const store = await copyOfStore()
  const ok = await runCli(['verify', path.join(store, '20240301', '1.des')])
  t.is(ok.code, 0, ok.stderr)
  await flipEntryByte(path.join(store, '20240301', '1.des'))
  const bad = await runCli(['verify', path.join(store, '20240301', '1.des')])
  t.is(bad.code, 4)
  const flag = await runCli(['verify', path.join(store, '20240301', '1.des'), '--parallel', '2'])
  t.is(flag.code, 2)
})

// ---------------------------------------------------------------------------
// S3 (MinIO)

function s3Env(bucket: string, prefix: string): NodeJS.ProcessEnv {
  return { DES_BACKEND: 's3', DES_S3_BUCKET: bucket, DES_S3_PREFIX: prefix, DES_S3_ENDPOINT_URL: s3TestEnv().endpoint, DES_N_BITS: String(N_BITS) }
}

async function uploaded(store: string, prefix = 'des/'): Promise<{ bucket: string; prefix: string }> {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-verify')
  await uploadDir(client, bucket, store, prefix)
  return { bucket, prefix }
}

test('S3: a clean store under a prefix verifies with exit 0; a flipped entry and a flipped BigFile are named by key', async (t) => {
  const store = await copyOfStore()
  const good = await uploaded(store)
  let r = await verifyStore([], s3Env(good.bucket, good.prefix))
  t.is(r.code, 0, r.stderr)
  t.is(r.summary.bigfiles, 1)
  t.is(r.summary.entries, 30)
  t.true(r.lines.filter((l) => l.type === 'shard').every((l) => l.status === 'ok' && l.checksummed))

  const uid = await flipEntryByte(path.join(store, '20240301', '5.1.des'))
  const big = bigfileOf(store)
  flipByte(big, 99)
  const bad = await uploaded(store)
  r = await verifyStore([], s3Env(bad.bucket, bad.prefix))
  t.is(r.code, 4)
  t.deepEqual(errors(r).sort(), [`20240301/5.1.des: corrupt`, `20240301/_bigFiles/${path.basename(big)}: bigfile-corrupt`])
  t.is(found(r, 'corrupt')[0].uid, uid)
})

test('S3: a shard whose footer is damaged is reported in the region the local verify names, the footer', async (t) => {
  const store = await copyOfStore()
  const shard = path.join(store, '20240301', '1.des')
  const size = fs.statSync(shard).size
  const bytes = fs.readFileSync(shard)
  // The footer's index size past the start of the file; a shard cut to less than header and footer.
  bytes.writeBigUInt64LE(2n ** 63n, size - 8)
  fs.writeFileSync(shard, bytes)
  fs.writeFileSync(path.join(store, '20240301', '7.des'), bytes.subarray(0, 5))
  const regions = (r: Report) => r.lines.filter((l) => /^20240301\/[17]\.des$/.test(l.key)).map((l) => [l.key, l.findings.map((f) => f.region)]).sort()
  const local = await verifyStore(['--base-dir', store, '--n-bits', String(N_BITS)])
  const { bucket, prefix } = await uploaded(store)
  const s3 = await verifyStore([], s3Env(bucket, prefix))
  t.deepEqual(regions(local), [
    ['20240301/1.des', ['footer']],
    ['20240301/7.des', ['footer']],
  ])
  t.deepEqual(regions(s3), regions(local))
})

test('a listing is the same on both backends: every object once, keys relative to the store, sorted, with sizes', async (t) => {
  const store = await copyOfStore()
  fs.writeFileSync(path.join(store, 'notes.txt'), 'hello')
  const { bucket, prefix } = await uploaded(store, 'deep/er/')
  const listed = async (source: LocalSource | S3Source) => {
    const out: Array<[string, number]> = []
    for await (const o of source.list()) out.push([o.key, o.size])
    return out
  }
  const local = await listed(new LocalSource(store))
  const s3 = await listed(new S3Source(testS3Client(), { bucket, prefix }, 's3'))
  t.deepEqual(s3, local)
  t.deepEqual(
    local.map(([k]) => k),
    local.map(([k]) => k).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
  )
  t.true(local.some(([k, size]) => k === 'notes.txt' && size === 5))
})

test('S3: every byte of every object is read once, in a tail GET and one streamed GET per shard and one GET per BigFile', async (t) => {
  const store = await copyOfStore()
  const { bucket, prefix } = await uploaded(store)
  const { client, sent } = recordingClient()
  const source = new S3Source(client, { bucket, prefix }, 's3')
  const sizes = new Map<string, number>()
  for await (const o of source.list()) sizes.set(o.key, o.size)
  sent.length = 0
  const summary = await scrub({ roots: [{ source, owns: () => true }], layout: 'nested', nBits: N_BITS, bigfilesPrefix: '_bigFiles', tailBytes: 512, parallel: 3 })
  t.is(summary.problems, 0)
  const gets = sent.filter((s) => s.method === 'GET' && !('list-type' in s.query))
  const read = new Map<string, number[][]>()
  for (const g of gets) {
    const key = g.key.replace(`/${bucket}/${prefix}`, '')
    const size = sizes.get(key)!
    const m = /^bytes=(\d*)-(\d*)$/.exec(g.range ?? '')
    const span = !m ? [0, size - 1] : m[1] === '' ? [Math.max(0, size - Number(m[2])), size - 1] : [Number(m[1]), Number(m[2])]
    read.set(key, [...(read.get(key) ?? []), span])
  }
  t.deepEqual([...read.keys()].sort(), [...sizes.keys()].sort(), 'every object is read')
  for (const [key, spans] of read) {
    spans.sort((a, b) => a[0] - b[0])
    const covered = spans.reduce((at, [a, b]) => (a === at ? b + 1 : -1), 0)
    t.is(covered, sizes.get(key), `${key}: ${JSON.stringify(spans)} cover it once, in order`)
    t.true(spans.length <= (key.includes('_bigFiles') ? 1 : 3), `${key}: ${spans.length} GETs`)
  }
  t.is(summary.bytes, [...sizes.values()].reduce((a, b) => a + b, 0))
})

/**
 * The store's shards 0..3 (and its BigFile) uploaded under `prefixA`, 4..15
 * (and the BigFile) under `prefixB` of one bucket; a zones file of those two
 * zones, a and b.
 */
async function twoZones(client: S3Client, bucket: string, store: string, prefixA: string, prefixB: string): Promise<string> {
  await uploadDir(client, bucket, store, prefixA, (k) => /\/[0-3](\.\d+)?\.des$/.test(k) || k.includes('_bigFiles'))
  await uploadDir(client, bucket, store, prefixB, (k) => /\/[4-9A-F](\.\d+)?\.des$/.test(k) || k.includes('_bigFiles'))
  const zones = path.join(tempDir('des-verify-zones-'), 'zones.yaml')
  const endpoint = s3TestEnv().endpoint
  const zone = (name: string, start: number, end: number, prefix: string) =>
    `  - {name: ${name}, range: {start: ${start}, end: ${end}}, s3: {bucket: ${bucket}, prefix: ${JSON.stringify(prefix)}, endpoint_url: "${endpoint}"}}`
  fs.writeFileSync(zones, [`n_bits: ${N_BITS}`, 'zones:', zone('a', 0, 3, prefixA), zone('b', 4, 15, prefixB)].join('\n'))
  return zones
}

test('S3 zones nested in one bucket (one at the root, one under b/): a clean store verifies, each zone without the other\'s keys', async (t) => {
  const store = await copyOfStore()
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-verify-nested-zones')
  const zones = await twoZones(client, bucket, store, '', 'b/')
  const r = await verifyStore([], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones })
  t.is(r.code, 0, r.stderr + JSON.stringify(errors(r)))
  t.false(r.lines.some((l) => l.key.startsWith('b/')), 'zone a does not report zone b\'s keys')
  // Routed with the zones file's n_bits; one set on purpose that differs is refused naming both, one set alike is not.
  t.is(r.summary.n_bits, N_BITS)
  const byFlag = await verifyStore(['--n-bits', '8'], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones })
  t.is(byFlag.code, 2, byFlag.stderr)
  t.regex(byFlag.stderr, /zones file .*zones\.yaml: it routes with n_bits 4, while --n-bits sets n_bits 8/)
  const byVar = await verifyStore([], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones, DES_N_BITS: '8' })
  t.is(byVar.code, 2, byVar.stderr)
  t.regex(byVar.stderr, /zones file .*zones\.yaml: it routes with n_bits 4, while DES_N_BITS sets n_bits 8/)
  t.is((await verifyStore([], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones, DES_N_BITS: String(N_BITS) })).code, 0)
})

test('S3 zones nested in one bucket on MinIO, one at the root, one under /b/ (stored as b/): zone a does not report zone b\'s keys', async (t) => {
  const store = await copyOfStore()
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-verify-slash-zones')
  const zones = await twoZones(client, bucket, store, '', '/b/')
  const r = await verifyStore([], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones })
  t.is(r.code, 0, r.stderr + JSON.stringify(errors(r)))
  t.deepEqual(r.lines.filter((l) => l.zone === 'a' && /^\/?b\//.test(l.key)).map((l) => l.key), [], 'zone a does not report zone b\'s keys')
  t.true(r.lines.some((l) => l.zone === 'b' && l.type === 'shard'), 'zone b is verified')
})

test('S3 zones over two prefixes: a clean store verifies; a shard in the zone that does not own it is named', async (t) => {
  const store = await copyOfStore()
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-verify-zones')
  // Zone a holds shards 0..3 (1 and 3 here), zone b 4..15 (5 and 7); the BigFile, shared by shards 1 and 7, is in both.
  const zones = await twoZones(client, bucket, store, 'za/', 'zb/')
  const env = { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones }
  let r = await verifyStore([], env)
  t.is(r.code, 0, r.stderr + JSON.stringify(errors(r)))
  t.deepEqual([...new Set(r.lines.map((l) => l.zone))].sort(), ['a', 'b'])
  t.deepEqual(r.lines.filter((l) => l.type === 'bigfile').map((l) => [l.zone, l.refs]).sort(), [['a', 1], ['b', 1]])

  await uploadDir(client, bucket, store, 'zb/', (k) => k === '20240302/3.des')
  r = await verifyStore([], env)
  t.is(r.code, 4)
  t.deepEqual(errors(r), ['20240302/3.des: wrong-zone'])
  const line = r.lines.find((l) => l.findings.some((f) => f.kind === 'wrong-zone'))!
  t.is(line.zone, 'b')
  t.regex(line.findings[0].message, /belongs to zone a/)

  // A zones file may leave indexes uncovered (as the reference's may): a shard found there is unreachable.
  fs.writeFileSync(zones, fs.readFileSync(zones, 'utf8').replace('range: {start: 4, end: 15}', 'range: {start: 6, end: 15}'))
  r = await verifyStore([], env)
  t.is(r.code, 4)
  t.true(found(r, 'wrong-zone').filter((f) => /^20240301\/5(\.\d+)?\.des$/.test(f.key)).every((f) => /no zone serves shard 5/.test(f.message)))
  t.true(found(r, 'wrong-zone').some((f) => f.key === '20240301/5.des'))
  t.regex(r.stderr, /shard indexes 4\.\.5 are in no zone/)
})
