// The addon's writer: what it writes reads back, off the event loop, and a
// failed or aborted write leaves nothing at the target.

import test from 'ava'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import { ShardReader, ShardWriter } from '../src/native'
import { DesError, errorCode } from '../src/errors'
import { sha256 } from './helpers/golden'

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'des-writer-'))
}

for (const codec of ['none', 'zstd', 'lz4'] as const) {
  test(`a ${codec} shard written here reads back byte-exact with its meta`, async (t) => {
    const dir = tmpDir()
    const target = path.join(dir, '20240101', '0A.des')
    const w = ShardWriter.create(target, { codec, bigFileThreshold: 100_000 })
    const files = new Map<string, Buffer>()
    for (let i = 0; i < 50; i++) {
      const data = i % 2 ? randomBytes(i * 37) : Buffer.from(`invoice ${i} `.repeat(i * 10))
      files.set(`doc-${i}.json`, data)
      await w.add(`doc-${i}.json`, data, { content_type: 'application/json', n: i, city: 'Łódź' })
    }
    const big = randomBytes(150_000)
    await w.add('scan-big.pdf', big)
    const summary = await w.finish()
    t.is(summary.entries, 51)
    t.is(summary.bigfiles, 1)
    t.true(fs.existsSync(path.join(dir, '20240101', '_bigFiles', sha256(big))))

    const r = await ShardReader.open(target)
    t.is(r.version, 2)
    for (const [uid, data] of files) {
      t.true((await r.read(uid)).equals(data), uid)
      const e = r.entry(uid)!
      t.deepEqual(JSON.parse(e.meta), { content_type: 'application/json', n: Number(uid.slice(4, -5)), city: 'Łódź' })
      if (codec !== 'none' && data.length > 100 && uid.endsWith('.json') && Number(uid.slice(4, -5)) % 2 === 0) t.is(e.codec, codec)
    }
    t.true((await r.read('scan-big.pdf')).equals(big))
    t.true(r.entry('scan-big.pdf')!.isBigfile)
  })
}

test('an aborted writer leaves no file at its target and no temp file', async (t) => {
  const dir = tmpDir()
  const w = ShardWriter.create(path.join(dir, 'x.des'))
  await w.add('a', Buffer.from('hello'))
  w.abort()
  t.deepEqual(fs.readdirSync(dir), [])
  const err = await t.throwsAsync(w.finish())
  t.is(errorCode(err), 'DES_BAD_ARG')
})

test('append adds to an existing shard and refuses a uid it already holds', async (t) => {
  const dir = tmpDir()
  const target = path.join(dir, 'x.des')
  const w1 = ShardWriter.create(target)
  await w1.add('a', Buffer.from('first'))
  await w1.finish()
  const w2 = await ShardWriter.append(target)
  t.true(w2.has('a'))
  await w2.add('b', Buffer.from('second'))
  const err = await t.throwsAsync(w2.add('a', Buffer.from('again')))
  t.is(errorCode(err), 'DES_DUPLICATE')
  await w2.finish()
  const r = await ShardReader.open(target)
  t.is((await r.read('a')).toString(), 'first')
  t.is((await r.read('b')).toString(), 'second')
})

test('addFiles packs local files in order and stops at the size limit', async (t) => {
  const dir = tmpDir()
  const files = Array.from({ length: 20 }, (_, i) => {
    const p = path.join(dir, `f${i}`)
    fs.writeFileSync(p, randomBytes(1000))
    return { uid: `f${i}`, path: p, size: 1000 }
  })
  const w = ShardWriter.create(path.join(dir, 'out.des'), { codec: 'none' })
  const res = await w.addFiles(files, 8 + 5500)
  t.is(res.consumed, 5)
  await w.finish()
  const r = await ShardReader.open(path.join(dir, 'out.des'))
  t.deepEqual(r.entries().map((e) => e.uid), ['f0', 'f1', 'f2', 'f3', 'f4'])
  t.true((await r.read('f3')).equals(fs.readFileSync(files[3].path)))
})

test('addFiles names the uid of a source that is missing or the wrong size', async (t) => {
  const dir = tmpDir()
  fs.writeFileSync(path.join(dir, 'ok'), 'abc')
  const w = ShardWriter.create(path.join(dir, 'out.des'))
  const missing = await t.throwsAsync(w.addFiles([{ uid: 'gone-1', path: path.join(dir, 'nope') }]))
  t.is(errorCode(missing), 'DES_NO_FILE')
  t.regex(missing!.message, /gone-1/)
  const odd = 'odd "uid"\n] with [DES_X] inside'
  const wrong = await t.throwsAsync(w.addFiles([{ uid: 'short-1', path: path.join(dir, 'ok'), size: 10 }, { uid: odd, path: path.join(dir, 'nope') }]))
  // A size given is one checked before: a file of another size changed since.
  t.is(errorCode(wrong), 'DES_SOURCE_CHANGED')
  t.regex(wrong!.message, /short-1.*3 bytes.*10/)
  // The uid comes as data, whatever it holds, never read back out of the message.
  t.is((missing as DesError).uid, 'gone-1')
  t.is((wrong as DesError).uid, 'short-1')
  const quoted = await t.throwsAsync(w.addFiles([{ uid: odd, path: path.join(dir, 'nope') }]))
  t.is((quoted as DesError).uid, odd)
  t.is(errorCode(quoted), 'DES_NO_FILE')
  const dup = await t.throwsAsync(w.addFiles([{ uid: 'twice', data: Buffer.from('a') }, { uid: 'twice', data: Buffer.from('b') }]))
  t.is((dup as DesError).uid, 'twice')
  w.abort()
})

test('opening a 200,000-entry shard keeps the index in Rust and answers lookups', async (t) => {
  const dir = tmpDir()
  const target = path.join(dir, 'many.des')
  const w = ShardWriter.create(target, { codec: 'none' })
  const files = Array.from({ length: 200_000 }, (_, i) => ({ uid: `u${i}`, data: Buffer.from(String(i)) }))
  for (let i = 0; i < files.length; i += 20_000) await w.addFiles(files.slice(i, i + 20_000))
  await w.finish()
  const heapBefore = process.memoryUsage().heapUsed
  const r = await ShardReader.open(target)
  t.is(r.entryCount, 200_000)
  for (const i of [0, 1, 99_999, 199_999]) t.is(r.readSync(`u${i}`).toString(), String(i))
  t.false(r.has('u200000'))
  // No JS object per entry: the JS heap grows by far less than the index.
  t.true(process.memoryUsage().heapUsed - heapBefore < r.indexSize / 4, 'index stays out of the JS heap')
})

test('bad writer options are refused with DES_BAD_ARG', (t) => {
  const dir = tmpDir()
  const err = t.throws(() => ShardWriter.create(path.join(dir, 'x.des'), { codec: 'brotli' as never }))
  t.is(errorCode(err), 'DES_BAD_ARG')
  t.regex(err!.message, /brotli/)
})
