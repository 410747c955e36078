// The original DES's deletions: a file its deletion API marked deleted (a
// tombstone in the `.meta` sidecar beside the shard) is 410 "File deleted",
// as the original answers it, never served again. The fixture was made by the
// original's own packer and MetadataManager (fixtures/tombstones/README.md).

import test from 'ava'
import type { Logger } from 'pino'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { retrievalsTotal } from '../src/metrics'
import { createServer } from '../src/serve/server'
import type { Store } from '../src/store/store'
import { sidecarKey, tombstoneKey } from '../src/store/tombstones'
import { BACKENDS, openBackend } from './helpers/backends'
import { captureLogs } from './helpers/logs'
import { closeServer, listenLocal, tempDir, writeStore } from './helpers/store'

const FIXTURE = path.join(__dirname, 'fixtures', 'tombstones')
const SHARD = '20240301_9_0000.des'
const DELETED = { uid: 'doc-1', createdAt: '2024-03-01T10:00:00.250000+02:00' }
const KEPT = { uid: 'doc-24', createdAt: '2024-03-01T11:30:00+02:00', data: 'kept beside it\n' }

/** The fixture's flat store, copied (a test may damage it). */
function fixtureStore(): string {
  const dir = tempDir('des-tombstones')
  for (const name of [SHARD, sidecarKey(SHARD)]) fs.copyFileSync(path.join(FIXTURE, name), path.join(dir, name))
  return dir
}

async function serveStore(store: Store, logger?: Logger): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer({ store, logger })
  const url = await listenLocal(server)
  return { url, close: () => closeServer(server) }
}

const fileUrl = (base: string, f: { uid: string; createdAt: string }) => `${base}/files/${encodeURIComponent(f.uid)}?created_at=${encodeURIComponent(f.createdAt)}`

async function counted(backend: string, code: string): Promise<number> {
  const m = await retrievalsTotal.get()
  return m.values.find((v) => v.labels.backend === backend && v.labels.status === 'error' && v.labels.code === code)?.value ?? 0
}

test('the tombstone key is the original\'s: uid, then created_at in UTC with Z, microseconds only when not zero', (t) => {
  t.is(tombstoneKey('doc-1', '2024-03-01T10:00:00.250000+02:00'), 'doc-1:2024-03-01T08:00:00.250000Z')
  t.is(tombstoneKey('doc-1', '2024-03-01T10:00:00.25+02:00'), 'doc-1:2024-03-01T08:00:00.250000Z')
  t.is(tombstoneKey('a', '2024-03-01T10:00:00Z'), 'a:2024-03-01T10:00:00Z')
  t.is(tombstoneKey('a', '2024-03-01T10:00:00.000000'), 'a:2024-03-01T10:00:00Z')
  t.is(tombstoneKey('a', '2024-03-01'), 'a:2024-03-01T00:00:00Z')
  t.is(tombstoneKey('a', '2024-03-01T00:30:00+01:00'), 'a:2024-02-29T23:30:00Z')
})

for (const kind of BACKENDS) {
  const title = (s: string) => `[${kind}] ${s}`

  test.serial(title('flat store of the original: its deleted file is 410 "File deleted" for GET and HEAD, counted as an error; its shard-mate is 200'), async (t) => {
    const b = await openBackend(kind, fixtureStore())
    const s = await serveStore(b.store({ layout: 'flat', nBits: 4 }))
    try {
      const before = await counted(kind, '410')
      const res = await fetch(fileUrl(s.url, DELETED))
      t.is(res.status, 410)
      const body = (await res.json()) as { detail: string; code: string }
      t.is(body.detail, 'File deleted')
      t.is(body.code, 'DES_DELETED')
      t.is((await fetch(fileUrl(s.url, DELETED), { method: 'HEAD' })).status, 410)
      t.is((await counted(kind, '410')) - before, 2)
      const kept = await fetch(fileUrl(s.url, KEPT))
      t.is(kept.status, 200)
      t.is(await kept.text(), KEPT.data)
      // Asked again (the find remembered, the index cached): still deleted.
      t.is((await fetch(fileUrl(s.url, DELETED))).status, 410)
      // The same instant written otherwise is the same file.
      t.is((await fetch(fileUrl(s.url, { uid: DELETED.uid, createdAt: '2024-03-01T08:00:00.25Z' }))).status, 410)
    } finally {
      await s.close()
    }
  })

  test.serial(title('nested store: a tombstone in the sidecar beside its shard is honoured too'), async (t) => {
    const dir = tempDir('des-tombstones')
    const keys = await writeStore(dir, [
      { uid: DELETED.uid, createdAt: DELETED.createdAt, data: Buffer.from('deleted through the original DES\n') },
      { uid: KEPT.uid, createdAt: KEPT.createdAt, data: Buffer.from(KEPT.data) },
    ])
    for (const key of keys) fs.copyFileSync(path.join(FIXTURE, sidecarKey(SHARD)), path.join(dir, sidecarKey(key)))
    const b = await openBackend(kind, dir)
    const store = b.store()
    await t.throwsAsync(store.get(DELETED.uid, DELETED.createdAt), { code: 'DES_DELETED' })
    t.is((await store.get(KEPT.uid, KEPT.createdAt)).toString(), KEPT.data)
  })

  test.serial(title('a damaged sidecar (not JSON, or without tombstones) refuses every file of its shard with a 502, and no path in the log'), async (t) => {
    for (const damage of ['{"version": 1, "tombstones": {', '{"version": 1, "index": {}}', '[]']) {
      const dir = fixtureStore()
      fs.writeFileSync(path.join(dir, sidecarKey(SHARD)), damage)
      const b = await openBackend(kind, dir)
      const logs = captureLogs()
      const s = await serveStore(b.store({ layout: 'flat', nBits: 4 }), logs.logger)
      try {
        for (const f of [KEPT, DELETED]) {
          const res = await fetch(fileUrl(s.url, f))
          t.is(res.status, 502, damage)
          t.is(((await res.json()) as { code: string }).code, 'DES_CORRUPT')
        }
        const line = JSON.stringify(await logs.waitFor((l) => l.status === 502))
        t.regex(line, /\.meta sidecar/)
        t.false(line.includes(dir), 'no path in the log')
      } finally {
        await s.close()
      }
    }
  })

  test.serial(title('a sidecar added after the shard was cached is honoured once the shard is re-checked'), async (t) => {
    const dir = fixtureStore()
    const sidecar = fs.readFileSync(path.join(dir, sidecarKey(SHARD)))
    fs.rmSync(path.join(dir, sidecarKey(SHARD)))
    const b = await openBackend(kind, dir)
    let now = 0
    const store = b.store({ layout: 'flat', nBits: 4, shardRecheckMs: 1000, clock: () => now })
    t.is((await store.get(DELETED.uid, DELETED.createdAt)).toString(), 'deleted through the original DES\n')
    fs.writeFileSync(path.join(dir, sidecarKey(SHARD)), sidecar)
    await b.sync((key) => key === sidecarKey(SHARD))
    // Within the interval the cached shard is trusted as it was...
    t.is((await store.get(DELETED.uid, DELETED.createdAt)).toString(), 'deleted through the original DES\n')
    now += 1000
    // ...after it, the re-check reads the sidecar, and the remembered find is refused too.
    await t.throwsAsync(store.get(DELETED.uid, DELETED.createdAt), { code: 'DES_DELETED' })
    t.is((await store.get(KEPT.uid, KEPT.createdAt)).toString(), KEPT.data)
  })
}
