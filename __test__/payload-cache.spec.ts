// The decoded-payload cache: hot files skip the storage read and the decode,
// stay within the byte bound, and never serve bytes of a replaced entry.
// Tests that read the process-wide metrics run serially (ava runs the rest
// of a file concurrently, and those would count into the same counters).

import test from 'ava'
import { payloadCacheTotal, s3RangeCallsTotal } from '../src/metrics'
import { BACKENDS, openBackend } from './helpers/backends'
import { listenLocal, payload, tempDir, writeStore } from './helpers/store'
import { PayloadCache, ShardReader } from '../src/native'
import { BufferPool } from '../src/serve/buffer-pool'
import { createServer } from '../src/serve/server'

const DAY = '2024-03-01T10:00:00Z'

async function counter(c: typeof payloadCacheTotal, labels: Record<string, string>): Promise<number> {
  const m = await c.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k as never] === l)).reduce((s, v) => s + v.value, 0)
}

for (const kind of BACKENDS) {
  test.serial(`[${kind}] a second read of a file is served from the payload cache with the same bytes`, async (t) => {
    const dir = tempDir()
    const data = payload(20_000, 3)
    await writeStore(dir, [{ uid: 'hot', createdAt: DAY, data }])
    const b = await openBackend(kind, dir)
    const store = b.store({ payloadCacheBytes: 1 << 20 })
    t.true((await store.get('hot', DAY)).equals(data))
    const hits = await counter(payloadCacheTotal, { result: 'hit' })
    const gets = await counter(s3RangeCallsTotal, { type: 'payload' })
    t.true((await store.get('hot', DAY)).equals(data))
    t.is(await counter(payloadCacheTotal, { result: 'hit' }), hits + 1)
    t.is(await counter(s3RangeCallsTotal, { type: 'payload' }), gets, 'no payload GET for a hot file')
  })
}

test.serial('the payload cache keeps within its byte bound', async (t) => {
  const dir = tempDir()
  const files = Array.from({ length: 20 }, (_, i) => ({ uid: `f${i}`, createdAt: DAY, data: payload(10_000, i) }))
  await writeStore(dir, files)
  const store = (await openBackend('local', dir)).store({ payloadCacheBytes: 50_000 })
  for (const f of files) t.true((await store.get(f.uid, f.createdAt)).equals(f.data))
  const hits = await counter(payloadCacheTotal, { result: 'hit' })
  for (const f of files) await store.get(f.uid, f.createdAt)
  // At most 5 of 20 files fit in 50,000 bytes; a full second pass in LRU order hits none of them.
  t.true((await counter(payloadCacheTotal, { result: 'hit' })) - hits <= 5)
})

test('a replaced entry is read anew once the index is re-checked, not served from the payload cache', async (t) => {
  const dir = tempDir()
  // uids 7 and 263 route to the same shard (263 mod 256 = 7).
  await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('version one') }])
  const store = (await openBackend('local', dir)).store({ payloadCacheBytes: 1 << 20 })
  t.is((await store.get('7', DAY)).toString(), 'version one')
  await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('version two!') }], { append: true, writer: { replace: true } })
  await writeStore(dir, [{ uid: '263', createdAt: DAY, data: Buffer.from('new neighbour') }], { append: true })
  // A uid missing from the cached index makes the store re-check the shard file.
  t.is((await store.get('263', DAY)).toString(), 'new neighbour')
  t.is((await store.get('7', DAY)).toString(), 'version two!')
})

test('the native cache: a read keeps its payload, get returns those bytes, stats count them', async (t) => {
  const dir = tempDir()
  const data = payload(30_000, 9)
  const [key] = await writeStore(dir, [{ uid: 'doc', createdAt: DAY, data }])
  const reader = await ShardReader.open(`${dir}/${key}`)
  const cache = new PayloadCache(1 << 20)
  const offset = reader.entry('doc')!.offset!
  t.is(cache.get(1, offset), null)
  t.true((await reader.read('doc', undefined, { cache, shard: 1 })).equals(data))
  const hot = cache.get(1, offset)
  t.is(cache.get(2, offset), null, 'another shard version')
  t.true(hot !== null && hot.equals(data))
  const s = cache.stats()
  t.is(s.entries, 1)
  t.true(s.bytes >= data.length && s.bytes < data.length + 1024)
  t.is(s.hits, 1)
  t.is(s.misses, 2)
})

test('the native cache evicts the least recently used payloads and copies a kept one into a caller\'s buffer', async (t) => {
  const dir = tempDir()
  // uids 7, 263, 519… route to one shard (mod 256 = 7).
  const files = Array.from({ length: 6 }, (_, i) => ({ uid: String(7 + 256 * i), createdAt: DAY, data: payload(20_000, 40 + i) }))
  const [key] = await writeStore(dir, files)
  const reader = await ShardReader.open(`${dir}/${key}`)
  const cache = new PayloadCache(45_000) // two 20 kB payloads at most
  const at = (uid: string) => reader.entry(uid)!.offset!
  for (const f of files) await reader.read(f.uid, undefined, { cache, shard: 3 })
  t.is(cache.get(3, at('7')), null, 'the oldest went first')
  t.true(cache.stats().bytes <= 45_000)
  t.true(cache.stats().evictions >= 4)
  const last = files[5]
  const target = Buffer.alloc(30_000, 0xee)
  t.is(cache.copyInto(3, at(last.uid), target), 20_000)
  t.true(target.subarray(0, 20_000).equals(last.data))
  t.is(target[20_000], 0xee, 'nothing written past the payload')
  t.is(cache.copyInto(3, at(last.uid), Buffer.alloc(19_999)), -1, 'a target too small is refused')
  t.is(cache.copyInto(3, at('7'), target), -1)
})

test('the native cache refuses payloads over its entry limit and a negative size', async (t) => {
  const dir = tempDir()
  const data = payload(5_000, 2)
  const [key] = await writeStore(dir, [{ uid: 'x', createdAt: DAY, data }])
  const reader = await ShardReader.open(`${dir}/${key}`)
  const cache = new PayloadCache(1 << 20, 4_096)
  t.true((await reader.read('x', undefined, { cache, shard: 1 })).equals(data))
  t.is(cache.get(1, reader.entry('x')!.offset!), null)
  t.throws(() => new PayloadCache(-1), { message: /maxBytes must be 0 or more/ })
  t.throws(() => cache.get(-1, 0), { message: /must not be negative/ })
})

test.serial('des serve answers a hot file from the payload cache with the same bytes and headers', async (t) => {
  const dir = tempDir()
  const data = payload(40_000, 5)
  await writeStore(dir, [{ uid: 'hot', createdAt: DAY, data, meta: { content_type: 'application/pdf' } }])
  const store = (await openBackend('local', dir)).store({ payloadCacheBytes: 1 << 20 })
  const server = createServer({ store })
  t.teardown(() => server.close())
  const base = await listenLocal(server)
  const url = `${base}/files/hot?created_at=${DAY}`
  const cold = await fetch(url)
  const coldBody = Buffer.from(await cold.arrayBuffer())
  const hits = await counter(payloadCacheTotal, { result: 'hit' })
  const warm = await fetch(url)
  const warmBody = Buffer.from(await warm.arrayBuffer())
  t.is(await counter(payloadCacheTotal, { result: 'hit' }), hits + 1)
  t.true(coldBody.equals(data))
  t.true(warmBody.equals(data))
  for (const h of ['etag', 'content-type', 'content-length']) t.is(warm.headers.get(h), cold.headers.get(h), h)
  const part = await fetch(url, { headers: { Range: 'bytes=100-199' } })
  t.is(part.status, 206)
  t.true(Buffer.from(await part.arrayBuffer()).equals(data.subarray(100, 200)), 'a range of a cached payload')
  t.true((await store.read(await store.find('hot', DAY))).equals(data))
})

test('des serve: cached payloads of different sizes sent from reused buffers never carry a neighbour\'s bytes', async (t) => {
  const dir = tempDir()
  // Sizes in one 64 KiB size class, larger then smaller, so a reused buffer holds stale bytes.
  const files = [60_000, 40_000, 33_000, 50_000, 34_000].map((size, i) => ({ uid: `s${i}`, createdAt: DAY, data: payload(size, 70 + i) }))
  await writeStore(dir, files)
  const store = (await openBackend('local', dir)).store({ payloadCacheBytes: 1 << 20 })
  const server = createServer({ store })
  t.teardown(() => server.close())
  const base = await listenLocal(server)
  for (let round = 0; round < 3; round++) {
    for (const f of files) {
      const r = await fetch(`${base}/files/${f.uid}?created_at=${DAY}`)
      const body = Buffer.from(await r.arrayBuffer())
      t.is(Number(r.headers.get('content-length')), f.data.length)
      t.true(body.equals(f.data), `${f.uid} round ${round}`)
    }
  }
  const part = await fetch(`${base}/files/s4?created_at=${DAY}`, { headers: { Range: 'bytes=-10' } })
  t.true(Buffer.from(await part.arrayBuffer()).equals(files[4].data.subarray(-10)))
})

test('the buffer pool: a size class per power of two from 4 KiB to 1 MiB, a bounded number kept', (t) => {
  const pool = new BufferPool()
  const a = pool.take(100)!
  t.is(a.length, 4096)
  t.is(pool.take(4097)!.length, 8192)
  t.is(pool.take(1 << 20)!.length, 1 << 20)
  t.is(pool.take((1 << 20) + 1), undefined, 'above the payload cache\'s entry limit')
  pool.give(a)
  t.is(pool.held, 1)
  t.is(pool.take(3000), a, 'a given-back buffer is reused')
  for (let i = 0; i < 100; i++) pool.give(Buffer.allocUnsafeSlow(4096))
  t.is(pool.held, 64)
})
