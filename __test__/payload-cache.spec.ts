// The decoded-payload cache: hot files skip the storage read and the decode,
// stay within the byte bound, and never serve bytes of a replaced entry.

import test from 'ava'
import { payloadCacheTotal, s3RangeCallsTotal } from '../src/metrics'
import { BACKENDS, openBackend } from './helpers/backends'
import { payload, tempDir, writeStore } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'

async function counter(c: typeof payloadCacheTotal, labels: Record<string, string>): Promise<number> {
  const m = await c.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k as never] === l)).reduce((s, v) => s + v.value, 0)
}

for (const kind of BACKENDS) {
  test(`[${kind}] a second read of a file is served from the payload cache with the same bytes`, async (t) => {
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

test('the payload cache keeps within its byte bound', async (t) => {
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
