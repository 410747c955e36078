// GET /files/:uid over HTTP, in-process on port 0, over every backend: status
// codes, headers, Range, ETag, BigFiles, faults; plus /health, /ready,
// /metrics, auth, request logs and desRouter in a user's own Express app.

import test from 'ava'
import express from 'express'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { apiKeysFromEnv } from '../src/config/env'
import { Auth } from '../src/serve/auth'
import { createApp } from '../src/serve/app'
import { desRouter } from '../src/serve/router'
import { createServer } from '../src/serve/server'
import type { Store } from '../src/store/store'
import { BACKENDS, openBackend, type Backend } from './helpers/backends'
import { goldenPath, readJson } from './helpers/golden'
import { captureLogs } from './helpers/logs'
import { closeServer, listenLocal, payload, tempDir, writeStore, type TestFile } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'
const sha = (b: Buffer | ArrayBuffer) => createHash('sha256').update(Buffer.from(b as ArrayBuffer)).digest('hex')

interface Sample {
  dir: string
  files: TestFile[]
  text: TestFile
  big: TestFile
}

async function sample(): Promise<Sample> {
  const dir = tempDir()
  const files: TestFile[] = []
  for (let i = 0; i < 20; i++) files.push({ uid: `f-${i}`, createdAt: DAY, data: payload(1000 + i * 101, i) })
  const text = { uid: 'notes.txt', createdAt: DAY, data: Buffer.from('hello, range requests!'), meta: { content_type: 'text/plain; charset=utf-8' } }
  const big = { uid: 'video/1', createdAt: DAY, data: payload(400_000, 7), meta: { mime: 'video/mp4' } }
  await writeStore(dir, [...files, text, big], { writer: { bigFileThreshold: 100_000 } })
  return { dir, files, text, big }
}

async function serveStore(store: Store, auth?: Auth): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer({ store, auth })
  const url = await listenLocal(server)
  return { url, close: () => closeServer(server) }
}

const fileUrl = (base: string, uid: string, createdAt = DAY) => `${base}/files/${encodeURIComponent(uid)}?created_at=${encodeURIComponent(createdAt)}`

for (const kind of BACKENDS) {
  const title = (s: string) => `[${kind}] ${s}`

  test(title('GET /files/:uid answers 200 with the bytes, Content-Length, a strong ETag and Content-Type from meta'), async (t) => {
    const s = await sample()
    const b = await openBackend(kind, s.dir)
    const srv = await serveStore(b.store())
    try {
      for (const f of s.files) {
        const r = await fetch(fileUrl(srv.url, f.uid))
        t.is(r.status, 200)
        t.true(Buffer.from(await r.arrayBuffer()).equals(f.data), f.uid)
        t.is(r.headers.get('content-length'), String(f.data.length))
        t.is(r.headers.get('content-type'), 'application/octet-stream')
        t.regex(r.headers.get('etag')!, /^"[^"]+"$/)
      }
      const r = await fetch(fileUrl(srv.url, s.text.uid))
      t.is(r.headers.get('content-type'), 'text/plain; charset=utf-8')
      t.is(await r.text(), 'hello, range requests!')
      // An offset written unencoded (+ kept as +) routes the same.
      const plus = await fetch(`${srv.url}/files/notes.txt?created_at=2024-03-01T10:00:00+00:00`)
      t.is(plus.status, 200)
      const big = await fetch(fileUrl(srv.url, s.big.uid))
      t.is(big.status, 200)
      t.is(big.headers.get('content-type'), 'video/mp4')
      t.is(big.headers.get('etag'), `"${sha(s.big.data)}"`)
      t.is(sha(await big.arrayBuffer()), sha(s.big.data))
    } finally {
      await srv.close()
    }
  })

  test(title('Range: one range is 206 with Content-Range, an unsatisfiable one 416, several the whole file'), async (t) => {
    const s = await sample()
    const srv = await serveStore((await openBackend(kind, s.dir)).store())
    try {
      const u = fileUrl(srv.url, s.text.uid)
      let r = await fetch(u, { headers: { Range: 'bytes=7-11' } })
      t.is(r.status, 206)
      t.is(r.headers.get('content-range'), `bytes 7-11/${s.text.data.length}`)
      t.is(r.headers.get('content-length'), '5')
      t.is(await r.text(), 'range')
      r = await fetch(u, { headers: { Range: 'bytes=-8' } })
      t.is(r.status, 206)
      t.is(await r.text(), 'equests!')
      r = await fetch(u, { headers: { Range: 'bytes=500-' } })
      t.is(r.status, 416)
      t.is(r.headers.get('content-range'), `bytes */${s.text.data.length}`)
      t.is((await r.json()).code, 'DES_RANGE')
      // A suffix longer than the file selects all of it (RFC 9110 §14.1.3); an empty suffix nothing.
      for (const suffix of [s.text.data.length, s.text.data.length + 1, 500, '9'.repeat(30)]) {
        r = await fetch(u, { headers: { Range: `bytes=-${suffix}` } })
        t.is(r.status, 206, `bytes=-${suffix}`)
        t.is(r.headers.get('content-range'), `bytes 0-${s.text.data.length - 1}/${s.text.data.length}`)
        t.is(await r.text(), s.text.data.toString())
      }
      r = await fetch(u, { headers: { Range: 'bytes=-0' } })
      t.is(r.status, 416)
      t.is(r.headers.get('content-range'), `bytes */${s.text.data.length}`)
      await r.arrayBuffer()
      r = await fetch(u, { headers: { Range: 'bytes=-500, 0-1' } })
      t.is(r.status, 206, 'a long suffix among other ranges still covers the file')
      t.is(await r.text(), s.text.data.toString())
      r = await fetch(u, { headers: { Range: 'bytes=0-1,5-6' } })
      t.is(r.status, 200)
      t.is(await r.text(), s.text.data.toString())
      r = await fetch(u, { headers: { Range: 'bytes=0-4', 'If-Range': '"stale"' } })
      t.is(r.status, 200, 'If-Range that does not match: whole file')
      // A BigFile range is streamed from its object's range.
      r = await fetch(fileUrl(srv.url, s.big.uid), { headers: { Range: 'bytes=300000-300099' } })
      t.is(r.status, 206)
      t.true(Buffer.from(await r.arrayBuffer()).equals(s.big.data.subarray(300000, 300100)))
      r = await fetch(fileUrl(srv.url, s.big.uid), { headers: { Range: 'bytes=-999999' } })
      t.is(r.status, 206)
      t.is(r.headers.get('content-range'), `bytes 0-${s.big.data.length - 1}/${s.big.data.length}`)
      t.is(sha(await r.arrayBuffer()), sha(s.big.data))
    } finally {
      await srv.close()
    }
  })

  test(title('If-None-Match with the ETag is 304; HEAD has the headers and no body'), async (t) => {
    const s = await sample()
    const srv = await serveStore((await openBackend(kind, s.dir)).store())
    try {
      for (const uid of [s.files[3].uid, s.big.uid]) {
        const u = fileUrl(srv.url, uid)
        const etag = (await fetch(u, { method: 'HEAD' })).headers.get('etag')!
        let r = await fetch(u, { headers: { 'If-None-Match': etag } })
        t.is(r.status, 304)
        t.is(r.headers.get('etag'), etag)
        t.is((await r.arrayBuffer()).byteLength, 0)
        r = await fetch(u, { headers: { 'If-None-Match': `"other", W/${etag}` } })
        t.is(r.status, 304)
        r = await fetch(u, { headers: { 'If-None-Match': '"other"' } })
        t.is(r.status, 200)
        await r.arrayBuffer()
      }
      const h = await fetch(fileUrl(srv.url, s.files[2].uid), { method: 'HEAD' })
      t.is(h.status, 200)
      t.is(h.headers.get('content-length'), String(s.files[2].data.length))
      t.is((await h.arrayBuffer()).byteLength, 0)
    } finally {
      await srv.close()
    }
  })

  test(title('the reference\'s statuses: 422 without created_at, 400 for a bad one, 404 for an unknown uid, no shard or no route, with a JSON body'), async (t) => {
    const s = await sample()
    const srv = await serveStore((await openBackend(kind, s.dir)).store())
    try {
      const expect = async (p: string, status: number, code: string, method = 'GET') => {
        const r = await fetch(srv.url + p, { method })
        t.is(r.status, status, p)
        const body = await r.json()
        t.is(body.code, code, p)
        t.is(typeof body.error, 'string')
        t.false(/\n\s+at /.test(body.error), 'no stack trace')
        return body
      }
      await expect('/files/f-1', 422, 'DES_MISSING_PARAM')
      await expect('/files/f-1?created_at=', 400, 'DES_BAD_ARG')
      const bad = await expect('/files/f-1?created_at=yesterday', 400, 'DES_BAD_ARG')
      t.regex(bad.error, /yesterday|timestamp|date/i)
      await expect('/files/f-1?created_at=2024-13-45T00:00:00Z', 400, 'DES_BAD_ARG')
      await expect(`/files/?created_at=${DAY}`, 404, 'DES_NOT_FOUND')
      await expect(`/files/%E0%A4%A?created_at=${DAY}`, 404, 'DES_NOT_FOUND')
      await expect(`/files/no-such-uid?created_at=${DAY}`, 404, 'DES_NOT_FOUND')
      await expect('/files/f-1?created_at=2031-01-01T00:00:00Z', 404, 'DES_NOT_FOUND')
      await expect(`/files/f-1?created_at=${DAY}`, 405, 'DES_METHOD', 'POST')
      await expect('/nowhere', 404, 'DES_NOT_FOUND')
    } finally {
      await srv.close()
    }
  })

  test(title('/health, /ready and /metrics with the SPEC §8 names'), async (t) => {
    const s = await sample()
    const b: Backend = await openBackend(kind, s.dir)
    const srv = await serveStore(b.store())
    try {
      t.is((await fetch(srv.url + '/health')).status, 200)
      const ready = await fetch(srv.url + '/ready')
      t.is(ready.status, 200)
      t.is((await ready.json()).backend, kind)
      await (await fetch(fileUrl(srv.url, s.files[0].uid))).arrayBuffer()
      await (await fetch(fileUrl(srv.url, s.files[0].uid))).arrayBuffer()
      const m = await fetch(srv.url + '/metrics')
      t.is(m.status, 200)
      t.regex(m.headers.get('content-type')!, /text\/plain/)
      const text = await m.text()
      t.regex(text, new RegExp(`des_retrievals_total\\{backend="${kind}",status="ok",code="200"\\} \\d+`))
      t.regex(text, new RegExp(`des_retrieval_seconds_bucket\\{le="[^"]+",backend="${kind}"\\}`))
      t.regex(text, /des_index_cache_total\{result="hit"\} \d+/)
      t.regex(text, /des_index_cache_total\{result="miss"\} \d+/)
      if (kind === 's3') {
        for (const type of ['tail', 'payload']) t.regex(text, new RegExp(`des_s3_range_calls_total\\{backend="s3",type="${type}"\\} [1-9]`))
      }
    } finally {
      await srv.close()
    }
    // Not ready when the backend is gone.
    const gone = kind === 'local' ? await openBackend('local', path.join(s.dir, 'missing')) : b
    const store = gone.store()
    if (kind === 's3') (store.sources.all()[0] as unknown as { bucket: string }).bucket = `${b.bucket}-gone`
    const srv2 = await serveStore(store)
    try {
      const r = await fetch(srv2.url + '/ready')
      t.is(r.status, 503)
      t.truthy((await r.json()).error)
    } finally {
      await srv2.close()
    }
  })

  for (const golden of ['flat-store', 'flat-store-offsets']) {
    test(title(`flat layout: every file of the reference packer's ${golden} is served byte-exact, asked with its created_at as written`), async (t) => {
      type Expect = { n_bits: number; files: Array<{ uid: string; created_at: string; size: number; sha256: string; date_dir?: string }> }
      const expect = readJson<Expect>(goldenPath(golden, 'expect.json'))
      // local reads the golden store in place; s3 gets a copy in a fresh bucket.
      const b = await openBackend(kind, goldenPath(golden))
      const srv = await serveStore(b.store({ layout: 'flat', nBits: expect.n_bits }))
      try {
        t.true(expect.files.length > 50)
        // In the offsets store, files whose UTC date is not the date they were written under.
        const elsewhere = expect.files.filter((f) => f.date_dir !== undefined && f.date_dir !== new Date(f.created_at).toISOString().slice(0, 10).replace(/-/g, ''))
        if (golden === 'flat-store-offsets') t.is(elsewhere.length, 46)
        for (const f of expect.files) {
          const r = await fetch(fileUrl(srv.url, f.uid, f.created_at))
          t.is(r.status, 200, f.uid)
          const data = Buffer.from(await r.arrayBuffer())
          t.is(data.length, f.size, f.uid)
          t.is(sha(data), f.sha256, f.uid)
        }
        const missing = await fetch(fileUrl(srv.url, 'not-there', expect.files[0].created_at))
        t.is(missing.status, 404)
      } finally {
        await srv.close()
      }
    })
  }
}

test('[local] a BigFile whose object is a folder or a FIFO answers 502 at once (GET and HEAD), never waiting for a writer', async (t) => {
  if (process.platform === 'win32') return t.pass()
  const s = await sample()
  const name = sha(s.big.data)
  const big = fs.readdirSync(s.dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(s.dir, f)).find((f) => path.basename(f) === name)!
  t.truthy(big)
  const kinds: Array<[string, () => void]> = [
    ['a folder', () => fs.mkdirSync(big)],
    // Opening a FIFO for reading waits for a writer: the request (and a thread of the pool) with it.
    ['a FIFO', () => execFileSync('mkfifo', [big])],
  ]
  for (const [kind, make] of kinds) {
    fs.rmSync(big, { recursive: true, force: true })
    make()
    const srv = await serveStore((await openBackend('local', s.dir)).store())
    try {
      for (const method of ['GET', 'HEAD']) {
        const r = await fetch(fileUrl(srv.url, s.big.uid), { method })
        t.is(r.status, 502, `${kind} ${method}`)
        const body = await r.text()
        t.false(body.includes(s.dir), `${kind} ${method}: ${body}`)
      }
    } finally {
      await srv.close()
    }
  }
})

test('a client of the reference gets the reference\'s status and detail for every request it can make (SERVING.md has the table)', async (t) => {
  type Expect = { n_bits: number; files: Array<{ uid: string; created_at: string; size: number; sha256: string }> }
  const golden = readJson<Expect>(goldenPath('flat-store', 'expect.json'))
  const f = golden.files.find((x) => x.created_at.endsWith('Z') && x.size > 0)!
  const b = await openBackend('local', goldenPath('flat-store'))
  const srv = await serveStore(b.store({ layout: 'flat', nBits: golden.n_bits }))
  const at = encodeURIComponent(f.created_at)
  const missing = [{ type: 'missing', loc: ['query', 'created_at'], msg: 'Field required', input: null }]
  // What the reference (its FastAPI app over this very store) answered, request by request.
  const cases: Array<[string, string, number, unknown]> = [
    ['GET', `/files/${f.uid}`, 422, missing],
    ['GET', `/files/${f.uid}?CREATED_AT=${at}`, 422, missing],
    ['GET', `/files/${f.uid}?created_at=`, 400, 'Invalid created_at format'],
    ['GET', `/files/${f.uid}?created_at=garbage`, 400, 'Invalid created_at format'],
    ['GET', `/files/x?created_at=%E0%A4%A`, 400, 'Invalid created_at format'],
    ['GET', `/files/${f.uid}?created_at=${at}&created_at=bad`, 400, 'Invalid created_at format'],
    ['GET', `/files/nope?created_at=bad&created_at=${at}`, 404, 'File not found'],
    ['GET', `/files/nope?created_at=${at}`, 404, 'File not found'],
    ['GET', '/files/nope?created_at=1999-01-01T00:00:00Z', 404, 'File not found'],
    ['GET', '/files/%E0%A4%A?created_at=2024-03-01T00:00:00Z', 404, 'File not found'],
    ['GET', '/files/?created_at=2024-03-01T00:00:00Z', 404, 'Not Found'],
    ['GET', '/files?created_at=2024-03-01T00:00:00Z', 404, 'Not Found'],
    ['GET', '/files/a/b?created_at=2024-03-01T00:00:00Z', 404, 'Not Found'],
    ['GET', '/nope', 404, 'Not Found'],
    ['POST', `/files/${f.uid}?created_at=${at}`, 405, 'Method Not Allowed'],
    ['PUT', `/files/${f.uid}?created_at=${at}`, 405, 'Method Not Allowed'],
    ['POST', '/health', 405, 'Method Not Allowed'],
    // Redirected (307 keeps the method) to /health, which refuses it.
    ['POST', '/health/', 405, 'Method Not Allowed'],
    ['DELETE', '/metrics', 405, 'Method Not Allowed'],
  ]
  try {
    for (const [method, target, status, detail] of cases) {
      const r = await fetch(srv.url + target, { method })
      t.is(r.status, status, `${method} ${target}`)
      const body = await r.json()
      t.deepEqual(body.detail, detail, `${method} ${target}`)
      t.is(typeof body.code, 'string')
    }
    const ok = await fetch(`${srv.url}/files/${f.uid}?created_at=${at}`)
    t.is(ok.status, 200)
    t.is(sha(await ok.arrayBuffer()), f.sha256)
    // The same instant in a basic form the reference accepts.
    const basic = f.created_at.replace(/[-:]/g, '').replace(/\.\d+/, '')
    t.is((await fetch(`${srv.url}/files/${f.uid}?created_at=${basic}`)).status, 200, basic)
    // A trailing slash is redirected to the file, query kept.
    const slash = await fetch(`${srv.url}/files/${f.uid}/?created_at=${at}`, { redirect: 'manual' })
    t.is(slash.status, 307)
    t.is(slash.headers.get('location'), `/files/${f.uid}?created_at=${at}`)
    t.deepEqual(await (await fetch(srv.url + '/health')).json(), { status: 'ok' })
    // So is one on /health, /ready and /metrics, to the route itself.
    for (const route of ['/health', '/ready', '/metrics']) {
      const r = await fetch(`${srv.url}${route}/?x=1`, { redirect: 'manual' })
      t.is(r.status, 307, route)
      t.is(r.headers.get('location'), `${route}?x=1`)
    }
    t.is((await fetch(srv.url + '/health/')).status, 200, 'followed')
  } finally {
    await srv.close()
  }
})

test('API keys: 401 without or with an unknown key, 403 without read scope, 200 by Bearer or X-API-Key; open paths stay open', async (t) => {
  const s = await sample()
  const b = await openBackend('local', s.dir)
  const auth = new Auth(apiKeysFromEnv('reader-key-123, metrics-key-123:metrics'), ['/health'])
  const srv = await serveStore(b.store(), auth)
  try {
    const u = fileUrl(srv.url, s.text.uid)
    let r = await fetch(u)
    t.is(r.status, 401)
    t.is(r.headers.get('www-authenticate'), 'Bearer')
    t.is((await r.json()).code, 'DES_UNAUTHORIZED')
    r = await fetch(u, { headers: { Authorization: 'Bearer wrong-key-123' } })
    t.is(r.status, 401)
    await r.arrayBuffer()
    r = await fetch(u, { headers: { Authorization: 'Bearer metrics-key-123' } })
    t.is(r.status, 403)
    t.is((await r.json()).code, 'DES_FORBIDDEN')
    r = await fetch(u, { headers: { Authorization: 'Bearer reader-key-123' } })
    t.is(r.status, 200)
    t.is(await r.text(), s.text.data.toString())
    r = await fetch(u, { headers: { 'X-API-Key': 'reader-key-123' } })
    t.is(r.status, 200)
    await r.arrayBuffer()
    t.is((await fetch(srv.url + '/health')).status, 200)
    t.is((await fetch(srv.url + '/metrics')).status, 401, '/metrics is not in this open list')
    t.is((await fetch(srv.url + '/metrics', { headers: { 'X-API-Key': 'reader-key-123' } })).status, 403)
    t.is((await fetch(srv.url + '/metrics', { headers: { 'X-API-Key': 'metrics-key-123' } })).status, 200)
    t.is((await fetch(srv.url + '/ready')).status, 401)
  } finally {
    await srv.close()
  }
})

test('one structured log line per request, with its request id', async (t) => {
  const s = await sample()
  const logs = captureLogs()
  const server = createServer({ store: (await openBackend('local', s.dir)).store(), logger: logs.logger })
  const url = await listenLocal(server)
  try {
    const ids: string[] = []
    for (const u of [fileUrl(url, s.text.uid), fileUrl(url, 'missing'), url + '/health']) {
      const r = await fetch(u)
      await r.arrayBuffer()
      ids.push(r.headers.get('x-request-id')!)
    }
    const reqs = await Promise.all(ids.map((id) => logs.waitFor((l) => l.request_id === id && l.msg === 'request')))
    t.deepEqual(
      reqs.map((l) => [l.method, String(l.url).split('?')[0], l.status]),
      [
        ['GET', '/files/notes.txt', 200],
        ['GET', '/files/missing', 404],
        ['GET', '/health', 200],
      ],
    )
    t.true(reqs.every((l) => typeof l.ms === 'number'))
  } finally {
    await closeServer(server)
  }
})

test('desRouter mounts in a user\'s own Express app', async (t) => {
  const s = await sample()
  const store = (await openBackend('local', s.dir)).store()
  const app = express()
  app.get('/hello', (_req, res) => {
    res.send('mine')
  })
  app.use('/api/v1/files', desRouter({ store }))
  const server = app.listen(0, '127.0.0.1')
  await new Promise((r) => server.once('listening', r))
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  try {
    t.is(await (await fetch(base + '/hello')).text(), 'mine')
    const r = await fetch(`${base}/api/v1/files/notes.txt?created_at=${DAY}`, { headers: { Range: 'bytes=0-4' } })
    t.is(r.status, 206)
    t.is(await r.text(), 'hello')
    t.is((await fetch(`${base}/api/v1/files/nope?created_at=${DAY}`)).status, 404)
    // createApp alone (without the fast path) serves /files too.
    const app2 = createApp({ store })
    const server2 = app2.listen(0, '127.0.0.1')
    await new Promise((r) => server2.once('listening', r))
    const r2 = await fetch(`http://127.0.0.1:${(server2.address() as { port: number }).port}/files/notes.txt?created_at=${DAY}`)
    t.is(await r2.text(), s.text.data.toString())
    server2.closeAllConnections()
    server2.close()
  } finally {
    server.closeAllConnections()
    server.close()
  }
})
