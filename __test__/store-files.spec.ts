// Local shards: cached indexes hold no open files, and a shard replaced by an
// append is re-read rather than read with a stale index.

import test from 'ava'
import * as fs from 'node:fs'
import { openBackend } from './helpers/backends'
import { payload, tempDir, writeStore } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length
}

test('thousands of cached local shard indexes keep no file descriptors open', async (t) => {
  if (!fs.existsSync('/proc/self/fd')) return t.pass('no /proc on this platform')
  const dir = tempDir()
  // 300 uids over 300 distinct shards (n_bits 16: uid i routes to shard i).
  const files = Array.from({ length: 300 }, (_, i) => ({ uid: String(i), createdAt: DAY, data: payload(200, i) }))
  await writeStore(dir, files, { nBits: 16 })
  const store = (await openBackend('local', dir)).store({ nBits: 16 })
  const before = openFds()
  for (const f of files) t.true((await store.get(f.uid, f.createdAt)).equals(f.data))
  t.is(store.indexCache.stats.entries, 300)
  t.true(openFds() - before < 20, `open descriptors grew by ${openFds() - before}`)
})

test('a cached local shard replaced by an append is re-read, old and new files both served', async (t) => {
  const dir = tempDir()
  await writeStore(dir, [{ uid: '7', createdAt: DAY, data: Buffer.from('old file') }])
  const store = (await openBackend('local', dir)).store()
  t.is((await store.get('7', DAY)).toString(), 'old file')
  // 263 routes to the same shard as 7 (263 mod 256 = 7): the append renames a new file over it.
  await writeStore(dir, [{ uid: '263', createdAt: DAY, data: Buffer.from('new file') }], { append: true })
  t.is((await store.get('7', DAY)).toString(), 'old file')
  t.is((await store.get('263', DAY)).toString(), 'new file')
})
