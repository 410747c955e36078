// What des serve guarantees when stored data is wrong or a request is odd:
// error bodies name no path and echo no bytes, and carry the request id the
// log line has; DES_CORRUPT is counted; an impossible size is a 502, never a
// 200 with Content-Length -1; a damaged BigFile never arrives whole; auth
// decides on the path the router dispatches on. Over every backend where the
// storage matters. Tests reading des_corrupt_reads_total run serially (ava
// runs the rest of a file concurrently, and those would count too).

import test, { type ExecutionContext } from 'ava'
import { DeleteObjectCommand } from '@aws-sdk/client-s3'
import express from 'express'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import { apiKeysFromEnv, loadServeConfig } from '../src/config/env'
import { corruptReadsTotal, retrievalsTotal } from '../src/metrics'
import { locateShard, ShardReader } from '../src/native'
import { Auth } from '../src/serve/auth'
import { createApp } from '../src/serve/app'
import { desRouter } from '../src/serve/router'
import { createServer } from '../src/serve/server'
import { FilesResponder } from '../src/serve/responder'
import { Budget } from '../src/budget'
import type { Found, Store } from '../src/store/store'
import { BACKENDS, openBackend } from './helpers/backends'
import { goldenPath } from './helpers/golden'
import { captureLogs, type CapturedLogs } from './helpers/logs'
import { startServe } from './helpers/serve-process'
import { closeServer, listenLocal, payload, tempDir, writeStore } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'
const INTEGRITY = 'stored data failed its integrity check'
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const fileUrl = (uid: string) => `/files/${encodeURIComponent(uid)}?created_at=${encodeURIComponent(DAY)}`

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** False when the connection ended before the whole body (Content-Length) came. */
  complete: boolean
}

/** One request with `target` sent exactly as written (no client-side URL normalising). */
function request(base: string, target: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: target, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', () => {}) // a body cut short: `complete` says so
      res.on('close', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** des_retrievals_total of one backend, status and code. */
async function retrievals(backend: string, status: string, code: string): Promise<number> {
  const m = await retrievalsTotal.get()
  return m.values.filter((v) => v.labels.backend === backend && v.labels.status === status && v.labels.code === code).reduce((s, v) => s + v.value, 0)
}

async function corruptReads(backend: string): Promise<number> {
  const m = await corruptReadsTotal.get()
  return m.values.filter((v) => v.labels.backend === backend).reduce((s, v) => s + v.value, 0)
}

async function serve(store: Store, opts: { auth?: Auth; logs?: CapturedLogs } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer({ store, auth: opts.auth, logger: opts.logs?.logger })
  const url = await listenLocal(server)
  return { url, close: () => closeServer(server) }
}

/** uids that route to shards different from each other and from `avoid`'s. */
function uidsInOtherShards(n: number, avoid: string[]): string[] {
  const taken = new Set(avoid.map((u) => locateShard(u, DAY).shardIndex))
  const out: string[] = []
  for (let i = 0; out.length < n; i++) {
    const uid = `other-${i}`
    const shard = locateShard(uid, DAY).shardIndex
    if (taken.has(shard)) continue
    taken.add(shard)
    out.push(uid)
  }
  return out
}

/**
 * A v2 shard (docs/FORMAT.md) with one inline entry whose uncompressed_size
 * is `size`: header, `stored` as data, index (count + entry), footer.
 */
function shardWithSize(uid: string, stored: Buffer, codec: number, size: bigint): Buffer {
  const name = Buffer.from(uid)
  const entry = Buffer.alloc(2 + name.length + 1 + 8 + 8 + 1 + 8 + 8 + 4)
  let o = entry.writeUInt16LE(name.length, 0)
  o += name.copy(entry, o)
  o = entry.writeUInt8(0, o) // flags: inline
  o = entry.writeBigUInt64LE(8n, o) // offset: right after the header
  o = entry.writeBigUInt64LE(BigInt(stored.length), o) // length
  o = entry.writeUInt8(codec, o)
  o = entry.writeBigUInt64LE(BigInt(stored.length), o) // compressed_size
  o = entry.writeBigUInt64LE(size, o) // uncompressed_size
  entry.writeUInt32LE(0, o) // meta_len
  const count = Buffer.alloc(4)
  count.writeUInt32LE(1)
  const index = Buffer.concat([count, entry])
  const footer = Buffer.alloc(12)
  footer.write('DESI')
  footer.writeBigUInt64LE(BigInt(index.length), 4)
  return Buffer.concat([Buffer.from('DES2\x02\0\0\0', 'latin1'), stored, index, footer])
}

/**
 * Sizes an index row can arrive with from an addon that does not refuse
 * them itself (one that turned 2^64-1 into -1 did): entries of these uids
 * come back from ShardReader.entry with that size, everything else as read.
 */
const ABSURD_SIZES: Record<string, number> = {
  'absurd-minus-one': -1,
  'absurd-2-64': 2 ** 64,
  'absurd-2-53': 2 ** 53,
  'absurd-nan': NaN,
  'absurd-fraction': 1.5,
  'absurd-infinity': Infinity,
}
const readEntry = ShardReader.prototype.entry
ShardReader.prototype.entry = function (this: ShardReader, uid: string) {
  const entry = readEntry.call(this, uid)
  return entry !== null && uid in ABSURD_SIZES ? { ...entry, size: ABSURD_SIZES[uid] } : entry
}

for (const kind of BACKENDS) {
  const title = (s: string) => `[${kind}] ${s}`

  test(title('a shard removed between a find and the read of a file in it: 404 File not found, naming no bucket or folder'), async (t) => {
    const dir = tempDir()
    // 7 and 263 share a shard (263 mod 256); the index is cached by the first request.
    const keys = await writeStore(dir, [
      { uid: '7', createdAt: DAY, data: payload(300, 1) },
      { uid: '263', createdAt: DAY, data: payload(300, 2) },
    ])
    const b = await openBackend(kind, dir)
    const s = await serve(b.store({ payloadCacheBytes: 0 }))
    try {
      t.is((await request(s.url, fileUrl('7'))).status, 200)
      if (kind === 'local') fs.rmSync(path.join(dir, keys[0]))
      else await b.client!.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: keys[0] }))
      const r = await request(s.url, fileUrl('263'))
      t.is(r.status, 404)
      const body = JSON.parse(r.body.toString())
      t.is(body.detail, 'File not found')
      for (const leak of [b.bucket ?? dir, dir, 's3://']) t.false(r.body.toString().includes(leak), `${leak} in ${r.body}`)
    } finally {
      await s.close()
    }
  })

  test(title('an append to the shard keeps a file\'s ETag (the CRC32C of its stored bytes): a client\'s copy stays valid, a 304'), async (t) => {
    const dir = tempDir()
    // 7 and 263 share a shard (263 mod 256).
    const seven = payload(1500, 41)
    await writeStore(dir, [{ uid: '7', createdAt: DAY, data: seven }], { writer: { codec: 'none' } })
    const b = await openBackend(kind, dir)
    const s = await serve(b.store({ shardRecheckMs: 0 }))
    try {
      const first = await request(s.url, fileUrl('7'))
      t.is(first.status, 200)
      const tag = first.headers.etag as string
      // The checksum's form, not the shard version's (`v…`), which every append changes.
      t.regex(tag, /^"[0-9a-z]+\.[0-9a-z]+\.[0-9a-z]+\.[0-9a-z]+\.[0-9a-z]+"$/)
      t.false(/\.v[0-9a-f]{16}"$/.test(tag), tag)

      await writeStore(dir, [{ uid: '263', createdAt: DAY, data: payload(900, 42) }], { append: true })
      await b.sync()
      t.is((await request(s.url, fileUrl('263'))).status, 200, 'the append is seen')
      const again = await request(s.url, fileUrl('7'), { headers: { 'If-None-Match': tag } })
      t.is(again.status, 304)
      t.is(again.headers.etag, tag)
      const whole = await request(s.url, fileUrl('7'))
      t.is(whole.headers.etag, tag)
      t.true(whole.body.equals(seven))
    } finally {
      await s.close()
    }
  })

  test(title('a shard rebuilt with other bytes at the same place: a new ETag, and never headers of one version over bytes of the other'), async (t) => {
    const dir = tempDir()
    const uid = 'same-place'
    // Same size, same offset, other bytes: only the content tells the versions apart.
    const version = (text: string) => Buffer.from(text.padEnd(1200, '.'))
    const [one, two, three] = [version('version-one'), version('VERSION-TWO'), version('version-3')]
    const rebuild = async (data: Buffer) => {
      const tmp = tempDir()
      const [key] = await writeStore(tmp, [{ uid, createdAt: DAY, data }], { writer: { codec: 'none' } })
      fs.mkdirSync(path.dirname(path.join(dir, key)), { recursive: true })
      fs.copyFileSync(path.join(tmp, key), path.join(dir, `${key}.new`))
      fs.renameSync(path.join(dir, `${key}.new`), path.join(dir, key))
    }
    await rebuild(one)
    const b = await openBackend(kind, dir)
    // A shard is trusted for a minute here: the stale index is what is tested.
    let now = 0
    const s = await serve(b.store({ shardRecheckMs: 60_000, clock: () => now }))
    try {
      const first = await request(s.url, fileUrl(uid), { method: 'HEAD' })
      t.is(first.status, 200)
      const oldTag = first.headers.etag as string

      await rebuild(two)
      await b.sync()
      // A client resuming its download of version one gets version two whole, with its own ETag.
      const resumed = await request(s.url, fileUrl(uid), { headers: { Range: 'bytes=600-', 'If-Range': oldTag } })
      t.is(resumed.status, 200)
      t.true(resumed.body.equals(two), 'the new version, whole')
      t.not(resumed.headers.etag, oldTag)
      const twoTag = resumed.headers.etag as string

      // Found anew once the minute is over: the ETag moves with the bytes.
      await rebuild(three)
      await b.sync()
      now += 61_000
      const fresh = await request(s.url, fileUrl(uid), { headers: { 'If-None-Match': twoTag } })
      t.is(fresh.status, 200, 'not a 304 for bytes that changed')
      t.true(fresh.body.equals(three))
      t.not(fresh.headers.etag, twoTag)
    } finally {
      await s.close()
    }
  })

  test.serial(title('a corrupt shard is a 502 naming no path and echoing no bytes, with the request id of its log line; des_corrupt_reads_total counts it'), async (t) => {
    const dir = tempDir()
    const [good, garbageFooter, badFooter, badHeader] = uidsInOtherShards(4, ['a'])
    const goodData = payload(3000, 1)
    await writeStore(dir, [{ uid: good, createdAt: DAY, data: goodData }])
    const put = (uid: string, bytes: Buffer) => {
      const loc = locateShard(uid, DAY)
      fs.mkdirSync(path.join(dir, loc.dateDir), { recursive: true })
      fs.writeFileSync(path.join(dir, loc.objectKey), bytes)
      return loc.objectKey
    }
    const cases: Array<{ uid: string; key: string }> = [
      // Footer magic "XXXX": the native message dumps those bytes.
      { uid: garbageFooter, key: put(garbageFooter, Buffer.concat([Buffer.from('DES2\x02\0\0\0'), payload(100), Buffer.from('XXXX'), Buffer.alloc(8)])) },
      { uid: badFooter, key: put(badFooter, fs.readFileSync(goldenPath('corrupt', 'bad-footer-magic.des'))) },
      // A well-formed index whose payload for "a" is not zstd.
      { uid: 'a', key: put('a', fs.readFileSync(goldenPath('corrupt-payload', 'zstd-garbage.des'))) },
    ]
    // Only a local open reads the header (an S3 reader reads the tail).
    if (kind === 'local') cases.push({ uid: badHeader, key: put(badHeader, fs.readFileSync(goldenPath('corrupt', 'bad-header-magic.des'))) })
    const logs = captureLogs()
    const srv = await serve((await openBackend(kind, dir)).store(), { logs })
    try {
      const before = await corruptReads(kind)
      for (const c of cases) {
        const r = await request(srv.url, fileUrl(c.uid))
        t.is(r.status, 502, c.key)
        const id = r.headers['x-request-id'] as string
        t.regex(id, /^[\x21-\x7e]{1,128}$/)
        const text = r.body.toString()
        t.deepEqual(JSON.parse(text), { error: INTEGRITY, code: 'DES_CORRUPT', request_id: id, detail: INTEGRITY }, c.key)
        t.false(text.includes(dir), 'no filesystem path')
        t.false(text.includes(c.key), 'no store key')
        t.false(/\[\s*[0-9a-f]{2}\s*,/i.test(text), 'no byte dump')
        // The detail is in the server's log, under the same id.
        const line = await logs.waitFor((l) => l.request_id === id)
        t.is(line.level, 50, 'error level')
        t.is(line.status, 502)
        t.is(line.err.code, 'DES_CORRUPT')
        t.true(line.err.message.includes(c.key), `the log names the shard: ${line.err.message}`)
      }
      t.is(await corruptReads(kind), before + cases.length)

      // A client's own sane X-Request-Id is the one used; a HEAD gets the status and no body.
      const traced = await request(srv.url, fileUrl('a'), { headers: { 'X-Request-Id': 'trace-0a1b2c' } })
      t.is(traced.headers['x-request-id'], 'trace-0a1b2c')
      t.is(JSON.parse(traced.body.toString()).request_id, 'trace-0a1b2c')
      t.is((await logs.waitFor((l) => l.request_id === 'trace-0a1b2c')).err.code, 'DES_CORRUPT')
      // HEAD answers from the index, so its check is the index's: a corrupt index is a 502 for it too.
      const head = await request(srv.url, fileUrl(garbageFooter), { method: 'HEAD' })
      t.is(head.status, 502)
      t.is(head.body.length, 0)
      t.is(await corruptReads(kind), before + cases.length + 2)

      // The server keeps serving the rest.
      const ok = await request(srv.url, fileUrl(good))
      t.is(ok.status, 200)
      t.true(ok.body.equals(goodData))
    } finally {
      await srv.close()
    }
  })

  for (const size of [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n]) {
    test(title(`a shard whose entry says an uncompressed size of ${size} is a 502 for GET, HEAD and Range, with or without the payload cache`), async (t) => {
      const dir = tempDir()
      const loc = locateShard('huge', DAY)
      fs.mkdirSync(path.join(dir, loc.dateDir), { recursive: true })
      // codec zstd, so the "none: size == length" rule of the index does not catch it.
      fs.writeFileSync(path.join(dir, loc.objectKey), shardWithSize('huge', Buffer.from('0123456789'), 1, size))
      const b = await openBackend(kind, dir)
      for (const payloadCacheBytes of [0, 1 << 20]) {
        const srv = await serve(b.store({ payloadCacheBytes }))
        try {
          for (const [method, headers] of [['GET', {}], ['HEAD', {}], ['GET', { Range: 'bytes=0-0' }], ['GET', {}]] as const) {
            const r = await request(srv.url, fileUrl('huge'), { method, headers })
            const what = `${method} ${JSON.stringify(headers)} cache ${payloadCacheBytes}`
            t.is(r.status, 502, what)
            t.not(r.headers['content-length'], '-1', what)
            if (method === 'GET') t.is(JSON.parse(r.body.toString()).code, 'DES_CORRUPT', what)
          }
        } finally {
          await srv.close()
        }
      }
    })
  }

  test(title('an index entry whose size the addon hands over as -1, 2^64, 2^53, NaN, 1.5 or Infinity is a 502 for GET, HEAD and Range, with or without the payload cache'), async (t) => {
    const dir = tempDir()
    const uids = Object.keys(ABSURD_SIZES)
    await writeStore(dir, uids.map((uid) => ({ uid, createdAt: DAY, data: Buffer.from('five!') })))
    const b = await openBackend(kind, dir)
    for (const payloadCacheBytes of [0, 1 << 20]) {
      const srv = await serve(b.store({ payloadCacheBytes }))
      try {
        for (const uid of uids) {
          // Twice: the second GET is the one a payload cache would answer.
          for (const [method, headers] of [['GET', {}], ['HEAD', {}], ['GET', { Range: 'bytes=0-0' }], ['GET', {}]] as const) {
            const r = await request(srv.url, fileUrl(uid), { method, headers })
            const what = `${uid} ${method} ${JSON.stringify(headers)} cache ${payloadCacheBytes}`
            t.is(r.status, 502, what)
            t.not(r.headers['content-length'], '-1', what)
            if (method === 'GET') t.is(JSON.parse(r.body.toString()).code, 'DES_CORRUPT', what)
          }
        }
      } finally {
        await srv.close()
      }
    }
  })

  test.serial(title('a whole-file GET of a BigFile with one byte flipped never arrives whole: the byte-bearing last chunk is withheld, the body stops short, DES_CORRUPT is logged and counted'), async (t) => {
    const dir = tempDir()
    const big = { uid: 'video/1', createdAt: DAY, data: payload(400_000, 7) }
    const text = { uid: 'notes.txt', createdAt: DAY, data: Buffer.from('still served') }
    await writeStore(dir, [big, text], { writer: { bigFileThreshold: 100_000 } })
    const object = path.join(dir, locateShard(big.uid, DAY).dateDir, '_bigFiles', sha(big.data))
    const tampered = Buffer.from(big.data)
    tampered[399_999] ^= 1 // in the last chunk
    fs.writeFileSync(object, tampered)
    const logs = captureLogs('warn') // failures are logged above info too
    const srv = await serve((await openBackend(kind, dir)).store(), { logs })
    try {
      const before = await corruptReads(kind)
      const [okBefore, failedBefore] = [await retrievals(kind, 'ok', '200'), await retrievals(kind, 'error', '502')]
      const r = await request(srv.url, fileUrl(big.uid))
      t.is(r.status, 200) // the status line left before the last byte was hashed
      t.is(r.headers['content-length'], String(big.data.length))
      t.false(r.complete, 'the body ends before its Content-Length')
      t.true(r.body.length < 399_999, `the flipped byte was never sent (${r.body.length} bytes arrived)`)
      t.true(r.body.equals(tampered.subarray(0, r.body.length)))
      const id = r.headers['x-request-id'] as string
      const line = await logs.waitFor((l) => l.request_id === id)
      t.is(line.level, 50)
      t.is(line.err.code, 'DES_CORRUPT')
      t.regex(line.err.message, /sha256/)
      t.is(await corruptReads(kind), before + 1)
      // A retrieval that failed, though its status line said 200.
      t.is(await retrievals(kind, 'ok', '200'), okBefore)
      t.is(await retrievals(kind, 'error', '502'), failedBefore + 1)
      // A flip early in the file: those bytes have gone out, but the body still stops short.
      const early = Buffer.from(big.data)
      early[1000] ^= 1
      fs.writeFileSync(object, early)
      const srv2 = await serve((await openBackend(kind, dir)).store())
      try {
        const r2 = await request(srv2.url, fileUrl(big.uid))
        t.false(r2.complete)
        t.true(r2.body.length < big.data.length)
        t.is(await corruptReads(kind), before + 2)
      } finally {
        await srv2.close()
      }
      const ok = await request(srv.url, fileUrl(text.uid))
      t.is(ok.body.toString(), 'still served')
    } finally {
      await srv.close()
    }
  })

  test(title('a Range of a BigFile is served only from an object whose whole bytes matched its sha256: other bytes of the same size are a 502 for ranges too; a version checked once serves ranges straight'), async (t) => {
    const dir = tempDir()
    const big = { uid: 'scan/3', createdAt: DAY, data: payload(300_000, 11) }
    await writeStore(dir, [big], { writer: { bigFileThreshold: 100_000 } })
    const object = path.join(dir, locateShard(big.uid, DAY).dateDir, '_bigFiles', sha(big.data))
    const b = await openBackend(kind, dir)
    const srv = await serve(b.store())
    const bigfileGets = () => b.sent.filter((r) => r.method === 'GET' && r.key.includes('_bigFiles/')).length
    try {
      for (const [start, end] of [[0, 99], [1000, 1999], [299_990, 299_999]]) {
        const r = await request(srv.url, fileUrl(big.uid), { headers: { Range: `bytes=${start}-${end}` } })
        t.is(r.status, 206)
        t.true(r.body.equals(big.data.subarray(start, end + 1)), `${start}-${end}`)
      }
      // On S3: the first range read the object whole once (its range, the whole, its range again); the others their range only.
      if (kind === 's3') t.is(bigfileGets(), 3 + 2)
      // Another version of the object, the same size, one bit flipped far from the ranges asked.
      const tampered = Buffer.from(big.data)
      tampered[200_000] ^= 1
      fs.writeFileSync(object, tampered)
      await b.sync((key) => key.includes('_bigFiles/'))
      const before = bigfileGets()
      for (const headers of [{ Range: 'bytes=0-99' }, { Range: 'bytes=-10' }, { Range: 'bytes=5-9' }]) {
        const r = await request(srv.url, fileUrl(big.uid), { headers })
        t.is(r.status, 502, JSON.stringify(headers))
        t.deepEqual(JSON.parse(r.body.toString()).error, INTEGRITY)
      }
      // Found damaged once, that version is not read whole again: each later range costs its first GET only.
      if (kind === 's3') t.is(bigfileGets() - before, 2 + 1 + 1)
    } finally {
      await srv.close()
    }
    // With the check off (DES_CHECK_BIGFILE_RANGES=false), a range is its bytes as they are.
    const unchecked = await serve(b.store({ checkBigfileRanges: false }))
    try {
      const r = await request(unchecked.url, fileUrl(big.uid), { headers: { Range: 'bytes=0-99' } })
      t.is(r.status, 206)
    } finally {
      await unchecked.close()
    }
  })

  test(title('a BigFile whose object is not the size the index says is a 502 before any byte, for a whole file and a range'), async (t) => {
    const dir = tempDir()
    const big = { uid: 'video/2', createdAt: DAY, data: payload(300_000, 9) }
    await writeStore(dir, [big], { writer: { bigFileThreshold: 100_000 } })
    fs.writeFileSync(path.join(dir, locateShard(big.uid, DAY).dateDir, '_bigFiles', sha(big.data)), big.data.subarray(0, 299_999))
    const b = await openBackend(kind, dir)
    const srv = await serve(b.store())
    try {
      for (const headers of [{}, { Range: 'bytes=0-99' }, { Range: 'bytes=-10' }]) {
        const r = await request(srv.url, fileUrl(big.uid), { headers })
        t.is(r.status, 502, JSON.stringify(headers))
        t.deepEqual(JSON.parse(r.body.toString()), { error: INTEGRITY, code: 'DES_CORRUPT', request_id: r.headers['x-request-id'], detail: INTEGRITY })
      }
      // HEAD answers as the GET would begin: a 502, and for a missing object too.
      t.is((await request(srv.url, fileUrl(big.uid), { method: 'HEAD' })).status, 502)
      const object = path.join(dir, locateShard(big.uid, DAY).dateDir, '_bigFiles', sha(big.data))
      fs.rmSync(object)
      if (kind === 's3') await b.client!.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: path.relative(dir, object).split(path.sep).join('/') }))
      t.is((await request(srv.url, fileUrl(big.uid), { method: 'HEAD' })).status, 502)
    } finally {
      await srv.close()
    }
  })
}

test('the payload cache\'s "not cached" (-1) is never taken for a payload, even against an entry size of -1', async (t) => {
  const store = (await openBackend('local', tempDir())).store({ payloadCacheBytes: 1 << 20 })
  const found = { uid: 'x', entry: { uid: 'x', size: -1, storedSize: 10, offset: 8, isBigfile: false, meta: '' }, shard: { id: 987654 } } as unknown as Found
  t.false(store.copyCachedPayload(found, Buffer.alloc(4096)))
})

test('every /files answer carries X-Request-Id: a sane incoming one is kept, others are replaced by a fresh id', async (t) => {
  const dir = tempDir()
  await writeStore(dir, [
    { uid: 'notes.txt', createdAt: DAY, data: Buffer.from('hello, ids') },
    { uid: 'big', createdAt: DAY, data: payload(200_000, 3) },
  ], { writer: { bigFileThreshold: 100_000 } })
  const srv = await serve((await openBackend('local', dir)).store())
  try {
    const etag = (await request(srv.url, fileUrl('notes.txt'), { method: 'HEAD' })).headers.etag as string
    const asks: Array<[string, string, Record<string, string>, number]> = [
      ['GET', fileUrl('notes.txt'), {}, 200],
      ['HEAD', fileUrl('notes.txt'), {}, 200],
      ['GET', fileUrl('notes.txt'), { Range: 'bytes=0-4' }, 206],
      ['GET', fileUrl('notes.txt'), { 'If-None-Match': etag }, 304],
      ['GET', fileUrl('notes.txt'), { Range: 'bytes=99-' }, 416],
      ['GET', fileUrl('big'), {}, 200],
      ['GET', '/files/notes.txt', {}, 422],
      ['GET', fileUrl('missing'), {}, 404],
      ['POST', fileUrl('notes.txt'), {}, 405],
    ]
    const ids = new Set<string>()
    for (const [method, target, headers, status] of asks) {
      const r = await request(srv.url, target, { method, headers })
      t.is(r.status, status, `${method} ${target}`)
      const id = r.headers['x-request-id'] as string
      t.regex(id ?? '', /^[\x21-\x7e]{1,128}$/, `${method} ${target}`)
      ids.add(id)
      if (status >= 400 && method !== 'HEAD') t.is(JSON.parse(r.body.toString()).request_id, id)
    }
    t.is(ids.size, asks.length, 'a new id per request')
    const kept = await request(srv.url, fileUrl('missing'), { headers: { 'X-Request-Id': 'abc-123_XYZ.9' } })
    t.is(kept.headers['x-request-id'], 'abc-123_XYZ.9')
    for (const bad of ['has space', 'x'.repeat(129), '']) {
      const r = await request(srv.url, fileUrl('notes.txt'), { headers: { 'X-Request-Id': bad } })
      t.not(r.headers['x-request-id'], bad)
      t.regex(r.headers['x-request-id'] as string, /^[\x21-\x7e]{1,128}$/)
    }
  } finally {
    await srv.close()
  }
})

test('the Express app and desRouter answer errors in the same shape, with X-Request-Id', async (t) => {
  const dir = tempDir()
  await writeStore(dir, [{ uid: 'n', createdAt: DAY, data: Buffer.from('x') }])
  const store = (await openBackend('local', dir)).store()
  const app = express()
  app.use('/api/files', desRouter({ store }))
  app.use('/whole', createApp({ store }))
  const server = http.createServer(app)
  const url = await listenLocal(server)
  try {
    for (const target of ['/whole/nowhere', `/api/files/missing?created_at=${DAY}`, '/api/files/n']) {
      const r = await request(url, target)
      const id = r.headers['x-request-id'] as string
      t.truthy(id, target)
      const body = JSON.parse(r.body.toString())
      t.deepEqual(Object.keys(body).sort(), ['code', 'detail', 'error', 'request_id'], target)
      t.is(body.request_id, id, target)
    }
    t.is((await request(url, '/whole/health')).headers['x-request-id'] !== undefined, true)
  } finally {
    await closeServer(server)
  }
})

test('a local store that goes away under the server: files answer 503, not 404, naming no path, and 200 again once it is back', async (t) => {
  const root = tempDir()
  const dir = path.join(root, 'store')
  const data = payload(500, 3)
  await writeStore(dir, [{ uid: 'here', createdAt: DAY, data }])
  // Found once (index cached), then the whole store is moved away.
  const srv = await serve((await openBackend('local', dir)).store({ shardRecheckMs: 0 }))
  try {
    t.is((await request(srv.url, fileUrl('here'))).status, 200)
    fs.renameSync(dir, path.join(root, 'moved'))
    for (const uid of ['here', 'never-stored']) {
      const r = await request(srv.url, fileUrl(uid))
      t.is(r.status, 503, uid)
      t.false(r.body.toString().includes(root), `${uid}: no path in the body`)
    }
    fs.renameSync(path.join(root, 'moved'), dir)
    const back = await request(srv.url, fileUrl('here'))
    t.is(back.status, 200)
    t.true(back.body.equals(data))
    t.is((await request(srv.url, fileUrl('never-stored'))).status, 404)
  } finally {
    await srv.close()
  }
})

test.serial('a BigFile download the client leaves half-way is logged with the bytes that went out and counted as not answered (499), not as a whole 200', async (t) => {
  const dir = tempDir()
  const big = { uid: 'leaving', createdAt: DAY, data: payload(8 << 20, 9) }
  await writeStore(dir, [big], { writer: { bigFileThreshold: 100_000 } })
  const logs = captureLogs('info')
  const srv = await serve((await openBackend('local', dir)).store(), { logs })
  try {
    const before = await retrievals('local', 'error', '499')
    const id = await new Promise<string>((resolve, reject) => {
      const u = new URL(srv.url)
      const req = http.request({ host: u.hostname, port: u.port, path: fileUrl(big.uid), agent: false }, (res) => {
        // Gone after the first chunk.
        res.once('data', () => {
          req.destroy()
          resolve(res.headers['x-request-id'] as string)
        })
      })
      // An error after the deliberate destroy settles nothing: the promise is resolved by then.
      req.on('error', reject)
      req.end()
    })
    const line = await logs.waitFor((l) => l.request_id === id)
    t.true((line.bytes as number) < big.data.length, `${line.bytes} bytes logged of ${big.data.length}`)
    t.is(await retrievals('local', 'error', '499'), before + 1)
  } finally {
    await srv.close()
  }
})

test.serial('a client that leaves while its file is being read is counted as not answered (499), not as a 200 it never got', async (t) => {
  const dir = tempDir()
  const file = { uid: 'slow-read', createdAt: DAY, data: payload(50_000, 4) }
  await writeStore(dir, [file])
  const store = (await openBackend('local', dir)).store()
  // The read waits until the client's connection is closed on the server's side.
  let reading!: () => void
  const readStarted = new Promise<void>((r) => (reading = r))
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const read = store.readPayload.bind(store)
  store.readPayload = async (found: Found) => {
    reading()
    await released
    return read(found)
  }
  const logs = captureLogs('info')
  const server = createServer({ store, logger: logs.logger })
  const serverSockets: net.Socket[] = []
  server.on('connection', (s) => serverSockets.push(s))
  const url = await listenLocal(server)
  try {
    const before = await retrievals('local', 'error', '499')
    const beforeOk = await retrievals('local', 'ok', '200')
    const u = new URL(url)
    const req = http.request({ host: u.hostname, port: u.port, path: fileUrl(file.uid), agent: false })
    req.on('error', () => {}) // destroyed on purpose
    req.end()
    await readStarted
    const closed = new Promise<void>((r) => serverSockets[0].once('close', () => r()))
    req.destroy()
    await closed
    release()
    await logs.waitFor((l) => l.url === fileUrl(file.uid))
    t.is(await retrievals('local', 'error', '499'), before + 1)
    t.is(await retrievals('local', 'ok', '200'), beforeOk)
  } finally {
    await closeServer(server)
  }
})

test('an absolute-form request target (http://host/files/...) is served as its path, as RFC 9112 requires', async (t) => {
  const dir = tempDir()
  const data = payload(700, 5)
  await writeStore(dir, [{ uid: 'abs', createdAt: DAY, data }])
  const srv = await serve((await openBackend('local', dir)).store())
  try {
    const r = await request(srv.url, `http://des.example${fileUrl('abs')}`)
    t.is(r.status, 200)
    t.true(r.body.equals(data))
    t.is((await request(srv.url, 'http://des.example')).status, 404, 'no path: the root, which is no route')
    t.is((await request(srv.url, `HTTP://DES.EXAMPLE:80/files/missing?created_at=${encodeURIComponent(DAY)}`)).status, 404)
  } finally {
    await srv.close()
  }
})

test('an entry over DES_MAX_PAYLOAD_BYTES is a 502 for HEAD as for GET (HEAD answers as the GET would begin)', async (t) => {
  const dir = tempDir()
  const files = [
    { uid: 'small', createdAt: DAY, data: payload(100, 1) },
    { uid: 'large', createdAt: DAY, data: payload(5000, 2) },
  ]
  await writeStore(dir, files)
  // A server of its own: the ceiling is process-wide.
  const srv = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_MAX_PAYLOAD_BYTES: '1000' })
  try {
    for (const method of ['GET', 'HEAD']) {
      t.is((await request(srv.url, fileUrl('large'), { method })).status, 502, method)
      t.is((await request(srv.url, fileUrl('small'), { method })).status, 200, method)
    }
  } finally {
    t.is(await srv.stop(), 0)
  }
})

test('/ready when the store is gone: 503 with a fixed message, the path only in the log', async (t) => {
  const missing = path.join(tempDir(), 'no-such-dir')
  const logs = captureLogs()
  const srv = await serve((await openBackend('local', missing)).store(), { logs })
  try {
    const r = await request(srv.url, '/ready')
    t.is(r.status, 503)
    const body = JSON.parse(r.body.toString())
    t.is(body.request_id, r.headers['x-request-id'])
    t.false(r.body.toString().includes(missing))
    const line = await logs.waitFor((l) => l.request_id === body.request_id && l.err !== undefined)
    t.true(line.err.message.includes(missing))
  } finally {
    await srv.close()
  }
})

test('auth decides on the path the router dispatches: no spelling of /metrics serves metrics to a key without the scope', async (t) => {
  const dir = tempDir()
  await writeStore(dir, [{ uid: 'n', createdAt: DAY, data: Buffer.from('x') }])
  const auth = new Auth(apiKeysFromEnv('reader-key-123, metrics-key-123:metrics'), ['/health'])
  const srv = await serve((await openBackend('local', dir)).store(), { auth })
  const reader = { Authorization: 'Bearer reader-key-123' }
  const metrics = { Authorization: 'Bearer metrics-key-123' }
  try {
    const exact = ['/metrics', '/metrics?']
    // With a slash: a 307 to the route (as the original answers), which checks the key again.
    const slashed = '/metrics/'
    const other = (target: string) => (target === slashed ? 307 : 404)
    for (const target of [...exact, '/METRICS', slashed, '/Metrics?x', '//metrics', '/%6detrics']) {
      const denied = await request(srv.url, target, { headers: reader })
      t.is(denied.status, exact.includes(target) ? 403 : other(target), `${target} with a read key`)
      t.false(denied.body.toString().includes('des_retrievals_total'), target)
      t.is((await request(srv.url, target)).status, 401, `${target} without a key`)
      // Only the exact route serves metrics, even to a key that may read them.
      const allowed = await request(srv.url, target, { headers: metrics })
      t.is(allowed.status, exact.includes(target) ? 200 : other(target), `${target} with a metrics key`)
      t.false(!exact.includes(target) && allowed.body.toString().includes('des_retrievals_total'), target)
    }
    t.is((await request(srv.url, slashed, { headers: reader })).headers.location, '/metrics')
    // An open path is open under its own spelling only.
    t.is((await request(srv.url, '/health')).status, 200)
    for (const target of ['/HEALTH', '/health/']) t.is((await request(srv.url, target)).status, 401, target)
  } finally {
    await srv.close()
  }
})

test('an API key no client could present as written (not printable ASCII, spaces around it) is refused at start-up; a keys file that does not parse is named by line, not quoted', (t) => {
  const file = path.join(tempDir(), 'keys.yaml')
  for (const key of ['clé-secrète-42', '  spacedkey99  ', 'tab\tinside-key']) {
    fs.writeFileSync(file, `keys:\n  - name: odd\n    key: ${JSON.stringify(key)}\n`)
    t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS_FILE: file }))!.message, /key "odd" is not printable ASCII/, key)
  }
  t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS: 'good-key-123,clé-secrète-42' }))!.message, /key #2 is not printable ASCII/)
  fs.writeFileSync(file, 'keys:\n  - name: broken\n    key: "TopSecretKey99\n   scopes: [read\n')
  const err = t.throws(() => loadServeConfig({ DES_API_KEYS_FILE: file }))!
  t.regex(err.message, /not valid YAML\/JSON at line \d+, column \d+/)
  t.false(err.message.includes('TopSecretKey99'))
})

test('an API key with no scopes is refused at start-up', (t) => {
  t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS: 'secret-key-1:' }))!.message, /key "#1" has no scopes/)
  const file = path.join(tempDir(), 'keys.yaml')
  fs.writeFileSync(file, 'keys:\n  - name: nothing\n    key: some-key-123\n    scopes: []\n')
  t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS_FILE: file }))!.message, /key "nothing" has no scopes/)
  const err = t.throws(() => new Auth([{ hash: Buffer.alloc(32), scopes: [], name: 'bare' }]))
  t.is((err as { code?: string }).code, 'DES_CONFIG')
  // Leaving scopes out still means read.
  t.deepEqual(loadServeConfig({ DES_API_KEYS: 'secret-key-1' }).apiKeys[0].scopes, ['read'])
})

/** A Budget that says when a taker got its share (how many responses were over by then) and when one has to wait. */
class WatchedBudget extends Budget {
  readonly taken: number[] = []
  waiters = 0
  private got = 0
  constructor(
    total: number,
    private readonly over: () => number,
    private readonly onWait: () => void = () => {},
  ) {
    super(total)
  }
  override tryTake(n: number) {
    const release = super.tryTake(n)
    if (release) this.record()
    return release
  }
  override async take(n: number) {
    const before = this.got
    const pending = super.take(n)
    if (this.got === before) {
      this.waiters++
      this.onWait()
    }
    const release = await pending
    if (this.got === before) this.record()
    return release
  }
  private takers: Array<() => void> = []
  /** Resolves when the next share is taken. */
  nextTake(): Promise<void> {
    return new Promise((resolve) => this.takers.push(resolve))
  }
  private record() {
    this.got++
    this.taken.push(this.over())
    for (const resolve of this.takers.splice(0)) resolve()
  }
}

/** An in-process server of one FilesResponder under /files, counting the responses that are over. */
async function budgetServer(t: ExecutionContext, store: Store, budget: (over: () => number) => WatchedBudget, sendIdleMs?: number, logs?: CapturedLogs) {
  let over = 0
  const bodies = budget(() => over)
  const responder = new FilesResponder({ store, bodies, sendIdleMs, logger: logs?.logger })
  const server = http.createServer((req, res) => {
    res.once('close', () => over++)
    void responder.handle(req, res, req.url!.slice('/files'.length))
  })
  const url = await listenLocal(server)
  t.teardown(() => closeServer(server))
  return { bodies, port: Number(new URL(url).port), url }
}

test('pipelined requests on one connection are answered one after another: the next body is read only once the response before it is over', async (t) => {
  const dir = tempDir()
  const big = payload(4 << 20, 11)
  await writeStore(dir, [{ uid: 'big', createdAt: DAY, data: big }])
  const store = (await openBackend('local', dir)).store()
  const { bodies, port } = await budgetServer(t, store, (over) => new WatchedBudget(1 << 30, over))
  // Three GETs in one write, the last closing the connection; read to the end.
  const socket = net.connect(port, '127.0.0.1')
  const get = (close: boolean) => `GET ${fileUrl('big')} HTTP/1.1\r\nHost: x\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
  socket.write(get(false) + get(false) + get(true))
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  await new Promise((r) => socket.on('close', r))
  const received = Buffer.concat(chunks)
  t.is(received.toString('latin1').split('HTTP/1.1 200 OK').length - 1, 3)
  t.true(received.length > 3 * big.length)
  // Each body was taken once the responses before it on the connection were over.
  t.deepEqual(bodies.taken, [0, 1, 2])
})

test('bodies held in memory have a budget: a response past it waits for room; a client that takes nothing is cut off, and the one waiting is answered', async (t) => {
  const dir = tempDir()
  // Larger than what the loopback's socket buffers take in: the first response cannot be over while its client reads nothing.
  // Stored in the shard (not a BigFile, which is streamed): read whole, held until sent.
  const big = payload(24 << 20, 12)
  await writeStore(dir, [{ uid: 'big', createdAt: DAY, data: big }], { writer: { bigFileThreshold: 32 << 20, codec: 'none' } })
  const store = (await openBackend('local', dir)).store()
  let someoneWaits!: () => void
  const waited = new Promise<void>((r) => (someoneWaits = r))
  const { bodies, port, url } = await budgetServer(t, store, (over) => new WatchedBudget(big.length, over, () => someoneWaits()), 500)
  // A client that asks and never reads.
  const stuck = net.connect(port, '127.0.0.1')
  stuck.write(`GET ${fileUrl('big')} HTTP/1.1\r\nHost: x\r\n\r\n`)
  stuck.pause()
  // A second client: its body does not fit next to the first one's, so it waits...
  const second = request(url, fileUrl('big'))
  await waited
  t.deepEqual(bodies.taken, [0])
  t.is(bodies.waiters, 1)
  // ...until the server cuts off the client that takes nothing, then it is answered in full.
  const r = await second
  t.is(r.status, 200)
  t.is(sha(r.body), sha(big))
  t.deepEqual(bodies.taken, [0, 1])
  // The client cut off finds its response short of its Content-Length.
  let got = 0
  stuck.on('data', (c: Buffer) => (got += c.length))
  stuck.on('error', () => {})
  stuck.resume()
  await new Promise((r) => stuck.on('close', r))
  t.true(got < big.length, `the client cut off got ${got} bytes of ${big.length}`)
})

test('a connection dropped with pipelined requests queued gives back every share of the body budget: later clients are still answered', async (t) => {
  const dir = tempDir()
  const big = payload(4 << 20, 13)
  await writeStore(dir, [{ uid: 'big', createdAt: DAY, data: big }], { writer: { bigFileThreshold: 32 << 20, codec: 'none' } })
  const store = (await openBackend('local', dir)).store()
  // Room for four bodies: a share kept by each dropped connection would use it up within six of them.
  const { bodies, port, url } = await budgetServer(t, store, (over) => new WatchedBudget(4 * big.length, over))
  for (let i = 0; i < 6; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    const gotOne = bodies.nextTake()
    socket.write(`GET ${fileUrl('big')} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(3))
    socket.pause()
    // Dropped once the server holds a body for it, with the rest of its requests queued.
    await gotOne
    socket.destroy()
  }
  const r = await request(url, fileUrl('big'))
  t.is(r.status, 200)
  t.is(sha(r.body), sha(big))
})

test('a % in a uid that starts no escape is the uid as written, as the original decodes a path (100% is the uid 100%)', async (t) => {
  const dir = tempDir()
  const files = [
    { uid: '100%', createdAt: DAY, data: payload(500, 31) },
    { uid: 'a%zz', createdAt: DAY, data: payload(600, 32) },
  ]
  await writeStore(dir, files)
  const srv = await serve((await openBackend('local', dir)).store())
  try {
    for (const [target, data] of [
      [`/files/100%?created_at=${encodeURIComponent(DAY)}`, files[0].data],
      [fileUrl('100%'), files[0].data],
      [`/files/a%zz?created_at=${encodeURIComponent(DAY)}`, files[1].data],
    ] as const) {
      const r = await request(srv.url, target)
      t.is(r.status, 200, target)
      t.is(sha(r.body), sha(data), target)
    }
    // Bytes that are no UTF-8 become U+FFFD, as in the original: no such uid here.
    t.is((await request(srv.url, `/files/%E0%A4%A?created_at=${encodeURIComponent(DAY)}`)).status, 404)
  } finally {
    await srv.close()
  }
})

test('requests queued on a connection the client dropped are not read: no body share, no read, each logged with nothing sent', async (t) => {
  const dir = tempDir()
  // Larger than what the loopback's socket buffers take in: the first response is not over before the drop.
  const big = payload(24 << 20, 14)
  await writeStore(dir, [{ uid: 'big', createdAt: DAY, data: big }], { writer: { bigFileThreshold: 32 << 20, codec: 'none' } })
  const store = (await openBackend('local', dir)).store()
  const logs = captureLogs()
  const { bodies, port } = await budgetServer(t, store, (over) => new WatchedBudget(1 << 30, over), undefined, logs)
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(`GET ${fileUrl('big')} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(10))
  // Dropped once the first response is being sent: the server's write then
  // fails, and that response is over (its 'finish', its 'close') a tick
  // before the socket's 'close'.
  await new Promise((r) => socket.once('data', r))
  socket.pause()
  socket.destroy()
  let n = 0
  await logs.waitFor((l) => l.url === fileUrl('big') && ++n === 10)
  const lines = logs.lines.filter((l) => l.url === fileUrl('big'))
  // The first request had its body read; the nine queued behind it were not.
  t.deepEqual(bodies.taken, [0])
  // All ten count as left (499): the first cut short in its one write (its share sent not known: 0), the nine with nothing sent.
  t.deepEqual(lines.map((l) => [l.status, l.bytes]), Array.from({ length: 10 }, () => [499, 0]))
})
