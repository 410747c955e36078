// Every byte served is the byte stored: a shard damaged anywhere (header,
// entry data, dead bytes, index, footer), in every codec, is reported by
// `des verify`, refused by `des cat` and by the store on every backend, and
// never read back as success with other bytes.

import test from 'ava'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ShardReader, ShardWriter, type Codec } from '../src/native'
import { DesError, errorCode } from '../src/errors'
import { openShard } from '../src/store/shard'
import { readBack } from '../src/migrate/verify'
import { BACKENDS, openBackend } from './helpers/backends'
import { runCli } from './helpers/cli'
import { payload, tempDir } from './helpers/store'

const CODECS: Codec[] = ['none', 'zstd', 'lz4']
/** Numeric uids 10 + 256·i all route to shard 0A with n_bits 8, so one shard serves them all. */
const uid = (i: number): string => String(10 + 256 * i)
const CREATED = '2024-03-01T10:00:00Z'

interface Written {
  file: string
  files: Map<string, Buffer>
  bytes: Buffer
  /** Byte positions to flip, one or more per region. */
  flips: Array<{ region: string; at: number }>
}

/** A shard as the packer writes it (one entry replaced, so it has dead bytes), in `dir/<key>`. */
async function writeShard(dir: string, codec: Codec): Promise<Written> {
  const file = path.join(dir, '20240301', '0A.des')
  const files = new Map<string, Buffer>()
  const w = ShardWriter.create(file, { codec, bigFileThreshold: 1 << 20 })
  for (let i = 0; i < 6; i++) {
    files.set(uid(i), payload(200 + i * 300, i))
    await w.add(uid(i), files.get(uid(i))!, { n: i })
  }
  await w.finish()
  const a = await ShardWriter.append(file, { codec, replace: true })
  files.set(uid(2), payload(150, 99))
  await a.add(uid(2), files.get(uid(2))!)
  await a.finish()
  const bytes = fs.readFileSync(file)
  const reader = await ShardReader.open(file)
  const dataEnd = reader.dataEnd
  const first = reader.entry(uid(0))!
  const last = reader.entry(uid(5))!
  const dead = reader.entries().length === 6 ? 8 + (first.storedSize ?? 0) + reader.entry(uid(1))!.storedSize : -1
  const flips = [
    { region: 'header', at: 0 },
    { region: 'header', at: 6 },
    { region: 'entry', at: first.offset! },
    { region: 'entry', at: last.offset! + last.storedSize - 1 },
    { region: 'data', at: dead + 1 },
    { region: 'index', at: dataEnd + 5 },
    { region: 'index', at: bytes.length - 13 },
    { region: 'footer', at: bytes.length - 12 },
    { region: 'footer', at: bytes.length - 8 },
  ]
  return { file, files, bytes, flips }
}

test('des verify of a shard whose footer or index cannot be read says no entry was checked, not "0/0 entries ok"', async (t) => {
  const dir = tempDir('des-integrity')
  const w = await writeShard(dir, 'zstd')
  for (const { region, at } of w.flips.filter((f) => f.region === 'footer')) {
    const bad = Buffer.from(w.bytes)
    bad[at] ^= 0x20
    fs.writeFileSync(w.file, bad)
    const v = await runCli(['verify', w.file])
    t.is(v.code, 4, `${region} ${at}`)
    t.is(v.stdout.toString(), `${w.file}: its index cannot be read: no entry was checked\n`, `${region} ${at}`)
  }
  fs.writeFileSync(w.file, w.bytes)
  const clean = await runCli(['verify', w.file])
  t.is(clean.code, 0)
  t.regex(clean.stdout.toString(), /: (\d+)\/\1 entries ok, \d+ bytes decoded\n$/)
})

for (const codec of CODECS) {
  test(`a ${codec} shard flipped in any region: des verify names the region, des cat never prints other bytes`, async (t) => {
    const dir = tempDir('des-integrity')
    const w = await writeShard(dir, codec)
    const clean = await runCli(['verify', '--json', w.file])
    t.is(clean.code, 0, clean.stderr)
    t.like(JSON.parse(clean.stdout.toString()), { checksummed: true, problems: [] })
    for (const { region, at } of w.flips) {
      const bad = Buffer.from(w.bytes)
      bad[at] ^= 0x20
      fs.writeFileSync(w.file, bad)
      const what = `${codec}: byte ${at} (${region})`
      const v = await runCli(['verify', '--json', w.file])
      t.is(v.code, 4, what)
      const report = JSON.parse(v.stdout.toString())
      const regions: string[] = report.problems.map((p: { region: string }) => p.region)
      const expected = region === 'footer' ? ['footer', 'index'] : [region]
      t.true(
        regions.some((r) => expected.includes(r)),
        `${what}: got ${JSON.stringify(report.problems)}`,
      )
      t.notRegex(v.stderr, /\[\d+, \d+/, `${what}: no byte dump`)
      for (const [u, data] of w.files) {
        const c = await runCli(['cat', w.file, u])
        if (c.code === 0) t.true(c.stdout.equals(data), `${what}: des cat ${u} printed other bytes with exit 0`)
        else {
          t.is(c.stdout.length, 0, `${what}: ${u} printed bytes and failed`)
          t.is(c.code, 4, `${what}: ${u}: ${c.stderr}`)
        }
      }
    }
    // One flip in an entry is that entry's failure only.
    fs.writeFileSync(w.file, w.bytes)
    const bad = Buffer.from(w.bytes)
    const reader = await ShardReader.open(w.file)
    bad[reader.entry(uid(4))!.offset! + 3] ^= 0x01
    fs.writeFileSync(w.file, bad)
    const c = await runCli(['cat', w.file, uid(4)])
    t.is(c.code, 4)
    t.regex(c.stderr, /checksum/)
    t.true((await runCli(['cat', w.file, uid(3)])).stdout.equals(w.files.get(uid(3))!))
  })
}

for (const kind of BACKENDS) {
  for (const codec of CODECS) {
    test(`[${kind}] ${codec}: the store refuses a flipped entry with DES_CORRUPT and serves its neighbours`, async (t) => {
      const dir = tempDir('des-integrity')
      const w = await writeShard(dir, codec)
      const reader = await ShardReader.open(w.file)
      const victim = reader.entry(uid(3))!
      const bad = Buffer.from(w.bytes)
      bad[victim.offset! + Math.floor(victim.storedSize / 2)] ^= 0x08
      fs.writeFileSync(w.file, bad)
      const backend = await openBackend(kind, dir)
      const store = backend.store({ payloadCacheBytes: 1 << 20 })
      const err = await t.throwsAsync(store.get(uid(3), CREATED))
      t.is(errorCode(err), 'DES_CORRUPT')
      t.regex(err!.message, /checksum/)
      // Asked again (a payload cache must not have kept anything of it).
      t.is(errorCode(await t.throwsAsync(store.get(uid(3), CREATED))), 'DES_CORRUPT')
      const found = await store.find(uid(3), CREATED)
      t.is(errorCode(await t.throwsAsync(store.readStored(found))), 'DES_CORRUPT', 'stored bytes are checked too (zstd passthrough)')
      for (const u of [uid(0), uid(5)]) t.true((await store.get(u, CREATED)).equals(w.files.get(u)!), u)
    })
  }

  test(`[${kind}] a flipped index is refused when the shard is opened`, async (t) => {
    const dir = tempDir('des-integrity')
    const w = await writeShard(dir, 'zstd')
    const reader = await ShardReader.open(w.file)
    const bad = Buffer.from(w.bytes)
    // The last uid byte of the first entry ("10" becomes "11"): still parses, only the checksum can tell.
    bad[reader.dataEnd + 4 + 2 + 1] ^= 0x01
    fs.writeFileSync(w.file, bad)
    const backend = await openBackend(kind, dir)
    const err = await t.throwsAsync(backend.store().get(uid(0), CREATED))
    t.is(errorCode(err), 'DES_CORRUPT')
    t.regex(err!.message, /index checksum mismatch/)
  })
}

for (const kind of BACKENDS) {
  test(`[${kind}] the migrator's read-back fails exactly the entries whose stored bytes do not check out`, async (t) => {
    const dir = tempDir('des-integrity')
    const w = await writeShard(dir, 'zstd')
    const reader = await ShardReader.open(w.file)
    const bad = Buffer.from(w.bytes)
    bad[reader.entry(uid(1))!.offset! + 1] ^= 0x40
    fs.writeFileSync(w.file, bad)
    const backend = await openBackend(kind, dir)
    const source = backend.sources.all()[0]
    const part = await openShard(source, '20240301/0A.des', 64 * 1024)
    const failed = await readBack(part, [...w.files.keys(), 'never-stored'])
    t.deepEqual([...failed.keys()].sort(), [uid(1), 'never-stored'].sort())
    t.regex(failed.get(uid(1))!, /checksum/)
  })
}

test("the migrator's read-back fails the cycle when the store cannot be read at all (unavailable), and names the file when it is gone", async (t) => {
  const dir = tempDir('des-integrity')
  const w = await writeShard(dir, 'zstd')
  const real = (await openBackend('local', dir)).sources.all()[0]
  const part = await openShard(real, '20240301/0A.des', 64 * 1024)
  // The same part, read through a source that fails its range reads as given.
  const failing = (err: Error) => ({ ...part, source: Object.assign(Object.create(Object.getPrototypeOf(real)), real, { getRange: () => Promise.reject(err) }) })
  const down = await t.throwsAsync(readBack(failing(new DesError('DES_UNAVAILABLE', 'storage unreachable')), [...w.files.keys()]))
  t.is(errorCode(down), 'DES_UNAVAILABLE')
  const gone = await readBack(failing(new DesError('DES_NO_FILE', 'no such object')), [...w.files.keys()])
  t.deepEqual([...gone.keys()].sort(), [...w.files.keys()].sort())
  t.regex(gone.get(uid(0))!, /no such object/)
})
