// Zstd passthrough: a zstd entry goes out as stored, with Content-Encoding:
// zstd, to a client that accepts it; everyone else gets the decoded bytes.

import test from 'ava'
import * as http from 'node:http'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { locateShard, ShardReader } from '../src/native'
import { createServer } from '../src/serve/server'
import { acceptsZstd } from '../src/serve/responder'
import { shardKey } from '../src/store/layout'
import { BACKENDS, openBackend } from './helpers/backends'
import { closeServer, listenLocal, tempDir, writeStore } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'
const TEXT = Buffer.from('an invoice line that compresses well. '.repeat(400))

interface Raw {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** A GET that leaves the body as sent (no client-side decoding). */
function get(url: string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      })
      .on('error', reject)
  })
}

async function storedBytes(dir: string, uid: string): Promise<Buffer> {
  const file = path.join(dir, shardKey(locateShard(uid, DAY)))
  const entry = (await ShardReader.open(file)).entry(uid)!
  return fs.readFileSync(file).subarray(entry.offset!, entry.offset! + entry.storedSize)
}

test('Accept-Encoding parsing: zstd listed and not refused with q=0', (t) => {
  t.true(acceptsZstd('gzip, deflate, br, zstd'))
  t.true(acceptsZstd('zstd;q=0.5'))
  t.false(acceptsZstd('zstd;q=0'))
  t.false(acceptsZstd('gzip, br'))
  t.false(acceptsZstd(undefined))
})

for (const kind of BACKENDS) {
  test(`[${kind}] a client accepting zstd gets the stored frame; others get the decoded bytes; ETags differ`, async (t) => {
    const dir = tempDir()
    await writeStore(dir, [{ uid: 'inv-1.txt', createdAt: DAY, data: TEXT, meta: { content_type: 'text/plain' } }])
    const b = await openBackend(kind, dir)
    const server = createServer({ store: b.store(), zstdPassthrough: true })
    const base = await listenLocal(server)
    try {
      const url = `${base}/files/inv-1.txt?created_at=${DAY}`
      const zstd = await get(url, { 'Accept-Encoding': 'gzip, br, zstd' })
      t.is(zstd.status, 200)
      t.is(zstd.headers['content-encoding'], 'zstd')
      t.is(zstd.headers.vary, 'Accept-Encoding')
      t.is(zstd.headers['content-type'], 'text/plain')
      t.true(zstd.body.equals(await storedBytes(dir, 'inv-1.txt')), 'the body is the stored zstd frame')
      t.true(zstd.body.length < TEXT.length / 10)
      t.is(Number(zstd.headers['content-length']), zstd.body.length)

      const plain = await get(url)
      t.is(plain.status, 200)
      t.is(plain.headers['content-encoding'], undefined)
      t.is(plain.headers.vary, 'Accept-Encoding')
      t.true(plain.body.equals(TEXT))
      t.not(plain.headers.etag, zstd.headers.etag)

      // Each representation revalidates with its own ETag.
      t.is((await get(url, { 'Accept-Encoding': 'zstd', 'If-None-Match': zstd.headers.etag! })).status, 304)
      t.is((await get(url, { 'Accept-Encoding': 'zstd', 'If-None-Match': plain.headers.etag! })).status, 200)
      // A Range request is answered from the decoded bytes.
      const part = await get(url, { 'Accept-Encoding': 'zstd', Range: 'bytes=0-9' })
      t.is(part.status, 206)
      t.is(part.headers['content-encoding'], undefined)
      t.true(part.body.equals(TEXT.subarray(0, 10)))
    } finally {
      await closeServer(server)
    }
  })
}

test('without DES_ZSTD_PASSTHROUGH a client accepting zstd still gets decoded bytes', async (t) => {
  const dir = tempDir()
  await writeStore(dir, [{ uid: 'inv-2.txt', createdAt: DAY, data: TEXT }])
  const server = createServer({ store: (await openBackend('local', dir)).store() })
  const base = await listenLocal(server)
  try {
    const r = await get(`${base}/files/inv-2.txt?created_at=${DAY}`, { 'Accept-Encoding': 'zstd' })
    t.is(r.headers['content-encoding'], undefined)
    t.is(r.headers.vary, undefined)
    t.true(r.body.equals(TEXT))
  } finally {
    await closeServer(server)
  }
})
