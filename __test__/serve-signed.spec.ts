// The original DES's signed requests (X-DES-* headers) on GET/HEAD /files,
// in-process on port 0 with a clock the test controls: every key type, the
// original's own client's requests, and each refusal with the status and
// detail the original answers.

import test from 'ava'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { parseSshPublicKey } from '../src/auth/ssh-public-key'
import type { AuthorizedKey } from '../src/config/authorized-keys'
import { apiKeysFromEnv } from '../src/config/env'
import { authRequestsTotal } from '../src/metrics'
import { Auth } from '../src/serve/auth'
import { ReplayGuard } from '../src/serve/replay-guard'
import { createServer } from '../src/serve/server'
import { SignedRequests } from '../src/serve/signed-requests'
import { desRouter } from '../src/serve/router'
import express from 'express'
import { queryParam } from '../src/serve/responder'
import { openBackend } from './helpers/backends'
import { captureLogs } from './helpers/logs'
import { ROOT } from './helpers/golden'
import { KEY_KINDS, makeKey, signedHeaders, type TestKey, certificateLine } from './helpers/ssh-keys'
import { closeServer, listenLocal, payload, tempDir, writeStore, type TestFile } from './helpers/store'

const DAY = '2024-03-01T10:00:00Z'
const NOW = Date.parse('2025-06-01T12:00:00Z')
const FIXTURE = JSON.parse(fs.readFileSync(path.join(ROOT, '__test__/fixtures/original-signed-requests.json'), 'utf8'))

const FILES: TestFile[] = ['order-7', 'tenant-a/1', 'tenant-a/tmp-2', 'tenant-b/3', 'plain'].map((uid, i) => ({ uid, createdAt: DAY, data: payload(300 + i, i) }))

let storeDir: Promise<string> | undefined
/** One store for every test (written once). */
function sampleStore(): Promise<string> {
  storeDir ??= (async () => {
    const dir = tempDir('des-signed')
    await writeStore(dir, FILES)
    return dir
  })()
  return storeDir
}

const keyCache = new Map<string, TestKey>()
/** A key pair per name, made once (ssh-keygen is a process each). */
function key(name: string, kind: TestKey['kind'] = 'ed25519'): TestKey {
  let k = keyCache.get(name)
  if (!k) keyCache.set(name, (k = makeKey(kind)))
  return k
}

type Entry = { key: TestKey | string } & Partial<Omit<AuthorizedKey, 'key'>>

function keyMap(entries: Entry[]): Map<string, AuthorizedKey> {
  const map = new Map<string, AuthorizedKey>()
  for (const e of entries) {
    const parsed = parseSshPublicKey(typeof e.key === 'string' ? e.key : e.key.line)
    map.set(parsed.canonical, { permissions: ['read'], ...e, key: parsed })
  }
  return map
}

interface Harness {
  url: string
  clock: { now: number }
  guard: ReplayGuard
  get(uid: string, headers?: Record<string, string>, opts?: { method?: string; createdAt?: string }): Promise<{ status: number; detail: unknown; code: string | undefined; body: Buffer }>
  close(): Promise<void>
}

async function serveSigned(entries: Entry[], opts: { requireAuthentication?: boolean; auth?: Auth; maxNonces?: number; now?: number } = {}): Promise<Harness> {
  const dir = await sampleStore()
  const store = (await openBackend('local', dir)).store()
  const clock = { now: opts.now ?? NOW }
  const guard = new ReplayGuard(opts.maxNonces ?? 1000)
  const signedRequests = new SignedRequests({ keys: keyMap(entries), admitter: guard, clock: () => clock.now })
  const server = createServer({ store, signedRequests, requireAuthentication: opts.requireAuthentication, auth: opts.auth })
  const url = await listenLocal(server)
  return {
    url,
    clock,
    guard,
    async get(uid, headers = {}, o = {}) {
      const r = await fetch(`${url}/files/${encodeURIComponent(uid)}?created_at=${encodeURIComponent(o.createdAt ?? DAY)}`, { method: o.method ?? 'GET', headers })
      const body = Buffer.from(await r.arrayBuffer())
      const json = r.status >= 400 && body.length > 0 ? JSON.parse(body.toString()) : {}
      return { status: r.status, detail: json.detail, code: json.code, body }
    },
    close: () => closeServer(server),
  }
}

/** Headers signed at the harness's clock. */
const signedAt = (h: Harness, k: TestKey, uid: string, o: { nonce?: string; timestamp?: string; signedUid?: string } = {}) =>
  signedHeaders(k, uid, DAY, { timestamp: new Date(h.clock.now).toISOString(), ...o }) as unknown as Record<string, string>

test("the original's own client: its Ed25519 and RSA requests are answered 200 at their time, and its fingerprint is ours", async (t) => {
  const at = Date.parse(FIXTURE.timestamp) + 30_000
  const s = await serveSigned(FIXTURE.vectors.map((v: { public_key: string }) => ({ key: v.public_key })), { now: at })
  try {
    for (const v of FIXTURE.vectors) {
      t.is(parseSshPublicKey(v.public_key).fingerprint, v.fingerprint, v.kind)
      const r = await s.get(FIXTURE.uid, v.headers)
      t.is(r.status, 200, v.kind)
      t.true(r.body.equals(FILES[0].data), v.kind)
    }
    // The same requests an hour later: out of the 5 minutes.
    s.clock.now = at + 3600_000
    const late = await s.get(FIXTURE.uid, { ...FIXTURE.vectors[0].headers, 'X-DES-Nonce': FIXTURE.vectors[0].headers['X-DES-Nonce'] })
    t.is(late.status, 401)
  } finally {
    await s.close()
  }
})

for (const kind of KEY_KINDS) {
  test(`a request signed by a ${kind} key is served (GET and HEAD); the same key not listed is refused`, async (t) => {
    const k = key(`type-${kind}`, kind)
    const s = await serveSigned([{ key: k }])
    try {
      const r = await s.get('plain', signedAt(s, k, 'plain'))
      t.is(r.status, 200)
      t.true(r.body.equals(FILES[4].data))
      t.is((await s.get('plain', signedAt(s, k, 'plain'), { method: 'HEAD' })).status, 200)
    } finally {
      await s.close()
    }
    const other = await serveSigned([{ key: key('someone-else') }])
    try {
      const r = await other.get('plain', signedAt(other, k, 'plain'))
      t.deepEqual([r.status, r.detail], [401, 'Invalid signature'])
    } finally {
      await other.close()
    }
  })
}

test('a key is matched by type and blob: the comment it is listed or sent with does not matter', async (t) => {
  const k = key('commented')
  const [type, blob] = k.line.split(' ')
  const s = await serveSigned([{ key: `${type} ${blob} listed-as-alice` }])
  try {
    const sent = { ...k, line: `${type} ${blob} sent-as-bob` }
    t.is((await s.get('plain', signedAt(s, sent, 'plain'))).status, 200)
  } finally {
    await s.close()
  }
})

test('an OpenSSH certificate is the key it certifies, as the original reads it: listed, a plain key signs; sent, it stands for the listed key', async (t) => {
  for (const kind of ['ed25519', 'rsa', 'p256'] as const) {
    const user = key(`cert-user-${kind}`, kind)
    const cert = certificateLine(user, key('cert-ca'))
    t.regex(cert, new RegExp(`^${parseSshPublicKey(user.line).type}-cert-v01@openssh\\.com `))
    t.is(parseSshPublicKey(cert).canonical, parseSshPublicKey(user.line).canonical, kind)
    const listedCert = await serveSigned([{ key: cert }])
    const listedKey = await serveSigned([{ key: user }])
    try {
      t.is((await listedCert.get('plain', signedAt(listedCert, user, 'plain'))).status, 200, kind)
      t.is((await listedKey.get('plain', signedAt(listedKey, { ...user, line: cert }, 'plain'))).status, 200, kind)
      // Another key's certificate is not this key.
      t.is((await listedKey.get('plain', signedAt(listedKey, { ...key('cert-other'), line: certificateLine(key('cert-other'), key('cert-ca')) }, 'plain'))).status, 401, kind)
    } finally {
      await listedCert.close()
      await listedKey.close()
    }
  }
  // A certificate cut short, or with bytes after it, is no key.
  const [type, blob] = certificateLine(key('cert-user-ed25519'), key('cert-ca')).split(' ')
  const bytes = Buffer.from(blob, 'base64')
  t.throws(() => parseSshPublicKey(`${type} ${bytes.subarray(0, bytes.length - 10).toString('base64')}`), { message: /certificate signature/ })
  t.throws(() => parseSshPublicKey(`${type} ${Buffer.concat([bytes, Buffer.from([0])]).toString('base64')}`), { message: /bytes after/ })
})

test("the query as the original's clients sign it: a space sent as + (as urlencode sends it), a parameter name percent-encoded, a header sent twice read by its first value", async (t) => {
  // Routing keeps + (an unencoded +02:00 offset), the signed text reads it as a space, as the original does.
  t.is(queryParam('created_at=2024-03-01+10:00:00Z', 'created_at'), '2024-03-01+10:00:00Z')
  t.is(queryParam('created_at=2024-03-01+10:00:00Z', 'created_at', true), '2024-03-01 10:00:00Z')
  t.is(queryParam('created%5Fat=2024-03-01&x=1', 'created_at'), '2024-03-01')
  t.is(queryParam('created_at=2024-03-01&%63reated_at=later', 'created_at'), 'later')
  t.is(queryParam('created%ZZat=1', 'created_at'), undefined)
  const k = key('query-forms')
  const s = await serveSigned([{ key: k }])
  try {
    const spaced = DAY.replace('T', ' ')
    // What the original's cli_auth sends: created_at urlencoded (space as +), the signature over the text with the space.
    const headers = signedHeaders(k, 'plain', spaced, { timestamp: new Date(s.clock.now).toISOString() }) as unknown as Record<string, string>
    const r = await fetch(`${s.url}/files/plain?${new URLSearchParams({ created_at: spaced })}`, { headers })
    t.is(r.status, 200, await r.clone().text())
    t.deepEqual(Buffer.from(await r.arrayBuffer()), FILES.find((f) => f.uid === 'plain')!.data)
    // The nonce twice: the first one is the one signed.
    const twice = signedHeaders(k, 'plain', DAY, { timestamp: new Date(s.clock.now).toISOString() }) as unknown as Record<string, string>
    // Two header lines (fetch would join them into one).
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.get(`${s.url}/files/plain?created_at=${encodeURIComponent(DAY)}`, { headers: { ...twice, 'X-DES-Nonce': [twice['X-DES-Nonce'], 'another'] } }, (res) => {
        res.resume()
        resolve(res.statusCode!)
      })
      req.on('error', reject)
    })
    t.is(status, 200)
  } finally {
    await s.close()
  }
})

test('a signed request is found by the created_at it signs: a + sent unencoded is a space there, as in the original', async (t) => {
  const k = key('plus-binding')
  const s = await serveSigned([{ key: k }])
  try {
    const at = (text: string) => signedHeaders(k, 'plain', text, { timestamp: new Date(s.clock.now).toISOString() }) as unknown as Record<string, string>
    const withOffset = DAY.replace('Z', '+00:00')
    // Encoded (%2B), as the original's client sends it: served.
    t.is((await fetch(`${s.url}/files/plain?created_at=${encodeURIComponent(withOffset)}`, { headers: at(withOffset) })).status, 200)
    // Sent unencoded, the + is a space: the signed text is not what is read (401, as the original answers).
    t.is((await fetch(`${s.url}/files/plain?created_at=${withOffset}`, { headers: at(withOffset) })).status, 401)
    // Signed with the space and sent with +: the text read is the signed one, which is no timestamp (400), never the file at +00:00.
    const spaced = withOffset.replace('+', ' ')
    t.is((await fetch(`${s.url}/files/plain?created_at=${withOffset}`, { headers: at(spaced) })).status, 400)
  } finally {
    await s.close()
  }
})

test("under desRouter, the X-DES headers are the ones the app's middleware leaves (set by a gateway under other names)", async (t) => {
  const k = key('middleware')
  const dir = await sampleStore()
  const store = (await openBackend('local', dir)).store()
  const signedRequests = new SignedRequests({ keys: keyMap([{ key: k }]), admitter: new ReplayGuard(100), clock: () => NOW })
  const app = express()
  // A gateway sends the signature as X-GW-*; the app renames them before DES reads them.
  app.use((req, _res, next) => {
    for (const name of ['public-key', 'signature', 'timestamp', 'nonce']) {
      const v = req.headers[`x-gw-${name}`]
      if (typeof v === 'string') req.headers[`x-des-${name}`] = v
    }
    next()
  })
  app.use('/files', desRouter({ store, signedRequests, requireAuthentication: true }))
  const server = http.createServer(app)
  const url = await listenLocal(server)
  try {
    const signed = signedHeaders(k, 'plain', DAY, { timestamp: new Date(NOW).toISOString() }) as unknown as Record<string, string>
    const renamed = Object.fromEntries(Object.entries(signed).map(([name, v]) => [name.replace(/^X-DES-/, 'X-GW-'), v]))
    const r = await fetch(`${url}/files/plain?created_at=${encodeURIComponent(DAY)}`, { headers: renamed })
    t.is(r.status, 200, await r.clone().text())
  } finally {
    await closeServer(server)
  }
})

test('refusals in the original’s words: missing headers, bad base64, bad or skewed timestamp, a replayed nonce, a bad signature, a wrong uid', async (t) => {
  const k = key('refusals')
  const s = await serveSigned([{ key: k }])
  try {
    const expect = async (what: string, headers: Record<string, string>, status: number, detail: string, uid = 'plain') => {
      const r = await s.get(uid, headers)
      t.deepEqual([r.status, r.detail], [status, detail], what)
      if (status === 401) t.is(r.code, 'DES_UNAUTHORIZED', what)
    }
    const good = () => signedAt(s, k, 'plain')
    // No X-DES header at all, auth not required: served as before.
    t.is((await s.get('plain')).status, 200)
    for (const name of ['X-DES-Public-Key', 'X-DES-Signature', 'X-DES-Timestamp', 'X-DES-Nonce']) {
      const h = good()
      delete h[name]
      await expect(`without ${name}`, h, 401, 'Missing authentication headers')
    }
    await expect('only a nonce', { 'X-DES-Nonce': 'n-1' }, 401, 'Missing authentication headers')
    await expect('a key that is not base64', { ...good(), 'X-DES-Public-Key': 'not base64!' }, 401, 'Invalid signature')
    await expect('a signature that is not base64', { ...good(), 'X-DES-Signature': 'abc' }, 401, 'Invalid signature')
    await expect('a key that is no OpenSSH key', { ...good(), 'X-DES-Public-Key': Buffer.from('hello').toString('base64') }, 401, 'Invalid signature')
    await expect('a timestamp that is not one', signedAt(s, k, 'plain', { timestamp: 'yesterday' }), 401, 'Invalid signature')
    await expect('6 minutes behind', signedAt(s, k, 'plain', { timestamp: new Date(NOW - 6 * 60_000).toISOString() }), 401, 'Invalid signature')
    await expect('6 minutes ahead', signedAt(s, k, 'plain', { timestamp: new Date(NOW + 6 * 60_000).toISOString() }), 401, 'Invalid signature')
    t.is((await s.get('plain', signedAt(s, k, 'plain', { timestamp: new Date(NOW - 4 * 60_000).toISOString() }))).status, 200, '4 minutes behind')
    t.is((await s.get('plain', signedAt(s, k, 'plain', { timestamp: '2025-06-01T12:03:00+00:00' }))).status, 200, 'an offset form')
    const once = good()
    t.is((await s.get('plain', once)).status, 200)
    await expect('the same nonce again', once, 401, 'Invalid signature')
    await expect('the same nonce again, for another uid', { ...signedAt(s, k, 'order-7', { nonce: once['X-DES-Nonce'] }) }, 401, 'Invalid signature', 'order-7')
    await expect('signed by another key', { ...good(), 'X-DES-Signature': signedAt(s, key('someone-else'), 'plain')['X-DES-Signature'] }, 401, 'Invalid signature')
    // A valid signature for one uid does not open another.
    await expect('a wrong uid in the URL', signedAt(s, k, 'plain', { signedUid: 'order-7' }), 401, 'Invalid signature')
    const forCreatedAt = signedHeaders(k, 'plain', '2024-03-01T10:00:00+00:00', { timestamp: new Date(NOW).toISOString() }) as unknown as Record<string, string>
    await expect('a created_at other than the one signed', forCreatedAt, 401, 'Invalid signature')
  } finally {
    await s.close()
  }
})

test('a forged request uses up neither its nonce nor a slot of the key’s hour', async (t) => {
  const k = key('forged')
  const s = await serveSigned([{ key: k, maxRequestsPerHour: 1 }])
  try {
    const real = signedAt(s, k, 'plain')
    t.is((await s.get('plain', { ...real, 'X-DES-Signature': signedAt(s, k, 'order-7')['X-DES-Signature'] })).status, 401)
    t.is((await s.get('plain', real)).status, 200)
  } finally {
    await s.close()
  }
})

test('an expired key is refused as an invalid signature (counted as expired); one expiring later is served', async (t) => {
  const old = key('expired')
  const fresh = key('not-expired')
  const s = await serveSigned([
    { key: old, expiresAtMs: NOW - 1000 },
    { key: fresh, expiresAtMs: NOW + 1000 },
  ])
  try {
    const before = await counts()
    const r = await s.get('plain', signedAt(s, old, 'plain'))
    t.deepEqual([r.status, r.detail], [401, 'Invalid signature'])
    t.is((await s.get('plain', signedAt(s, fresh, 'plain'))).status, 200)
    const after = await counts()
    t.true(after.expired - before.expired >= 1)
  } finally {
    await s.close()
  }
})

test('max_requests_per_hour: over it is 429 "Rate limit exceeded" until the oldest request leaves the sliding hour', async (t) => {
  const k = key('limited')
  const s = await serveSigned([{ key: k, maxRequestsPerHour: 3 }])
  try {
    for (let i = 0; i < 3; i++) {
      t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 200)
      s.clock.now += 10 * 60_000
    }
    const r = await s.get('plain', signedAt(s, k, 'plain'))
    t.deepEqual([r.status, r.detail, r.code], [429, 'Rate limit exceeded', 'DES_RATE_LIMITED'])
    // 30 minutes after the first: still three in the hour. 60 minutes after it: the first has left.
    s.clock.now = NOW + 59 * 60_000
    t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 429)
    s.clock.now = NOW + 60 * 60_000 + 1
    t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 200)
  } finally {
    await s.close()
  }
})

test('permissions and prefixes: no "read", a uid outside allowed_prefixes or inside excluded_prefixes is 403 "Permission denied"', async (t) => {
  const writer = key('write-only')
  const tenant = key('tenant-a')
  const s = await serveSigned([
    { key: writer, permissions: ['write'] },
    { key: tenant, allowedPrefixes: ['tenant-a/'], excludedPrefixes: ['tenant-a/tmp'] },
  ])
  try {
    const denied = async (k: TestKey, uid: string) => {
      const r = await s.get(uid, signedAt(s, k, uid))
      t.deepEqual([r.status, r.detail, r.code], [403, 'Permission denied', 'DES_FORBIDDEN'], uid)
    }
    await denied(writer, 'plain')
    t.is((await s.get('tenant-a/1', signedAt(s, tenant, 'tenant-a/1'))).status, 200)
    await denied(tenant, 'tenant-b/3')
    await denied(tenant, 'tenant-a/tmp-2')
  } finally {
    await s.close()
  }
})

test('DES_REQUIRE_AUTHENTICATION with authorized keys only: a request without headers is 401 "Authentication required"', async (t) => {
  const k = key('required')
  const s = await serveSigned([{ key: k }], { requireAuthentication: true })
  try {
    const r = await s.get('plain')
    t.deepEqual([r.status, r.detail], [401, 'Authentication required'])
    t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 200)
  } finally {
    await s.close()
  }
})

test('with API keys too: a request carrying X-DES-* headers is decided by its signature, any other by its API key', async (t) => {
  const k = key('with-api-keys')
  const s = await serveSigned([{ key: k }], { auth: new Auth(apiKeysFromEnv('reader-key-123')) })
  try {
    t.is((await s.get('plain')).status, 401)
    t.is((await s.get('plain', { 'X-API-Key': 'reader-key-123' })).status, 200)
    t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 200)
    // A valid API key does not rescue a bad signature.
    const r = await s.get('plain', { ...signedAt(s, k, 'plain', { signedUid: 'x' }), 'X-API-Key': 'reader-key-123' })
    t.deepEqual([r.status, r.detail], [401, 'Invalid signature'])
  } finally {
    await s.close()
  }
})

test('nonces are bounded: when the set is full a new one is refused (429), not an old one forgotten; expired ones make room', async (t) => {
  const k = key('nonce-cap')
  const s = await serveSigned([{ key: k }], { maxNonces: 2 })
  try {
    const first = signedAt(s, k, 'plain')
    t.is((await s.get('plain', first)).status, 200)
    t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 200)
    const r = await s.get('plain', signedAt(s, k, 'plain'))
    t.deepEqual([r.status, r.detail], [429, 'Rate limit exceeded'])
    t.is((await s.get('plain', first)).status, 401, 'the first nonce is still remembered')
    t.is(s.guard.size, 2)
    s.clock.now += 10 * 60_000 + 1
    t.is((await s.get('plain', signedAt(s, k, 'plain'))).status, 200)
    t.is(s.guard.size, 1)
  } finally {
    await s.close()
  }
})

async function counts(): Promise<Record<string, number>> {
  const out: Record<string, number> = { success: 0, invalid_sig: 0, expired: 0, rate_limited: 0 }
  for (const v of (await authRequestsTotal.get()).values) out[String(v.labels.result)] = v.value
  return out
}

test.serial('des_auth_requests_total counts success, invalid_sig, expired and rate_limited as the original does', async (t) => {
  const k = key('metrics')
  const old = key('metrics-old')
  const s = await serveSigned([{ key: k, maxRequestsPerHour: 1 }, { key: old, expiresAtMs: 0 }])
  try {
    const before = await counts()
    await s.get('plain', signedAt(s, k, 'plain'))
    await s.get('plain', signedAt(s, k, 'plain'))
    await s.get('plain', signedAt(s, old, 'plain'))
    await s.get('plain', signedAt(s, key('metrics-unknown'), 'plain'))
    await s.get('plain', { 'X-DES-Nonce': 'only' }) // missing headers: not counted, as in the original
    const after = await counts()
    t.deepEqual(
      Object.fromEntries(Object.keys(after).map((r) => [r, after[r] - before[r]])),
      { success: 1, invalid_sig: 1, expired: 1, rate_limited: 1 },
    )
  } finally {
    await s.close()
  }
})

test('the log names a refused key by fingerprint only, never the key or the signature', async (t) => {
  const k = key('logged')
  const logs = captureLogs()
  const dir = await sampleStore()
  const signedRequests = new SignedRequests({ keys: keyMap([]), admitter: new ReplayGuard(10), clock: () => NOW, logger: logs.logger })
  const server = createServer({ store: (await openBackend('local', dir)).store(), signedRequests, logger: logs.logger })
  const url = await listenLocal(server)
  try {
    const headers = signedHeaders(k, 'plain', DAY, { timestamp: new Date(NOW).toISOString() }) as unknown as Record<string, string>
    t.is((await fetch(`${url}/files/plain?created_at=${DAY}`, { headers })).status, 401)
    await logs.waitFor((l) => /signed request refused/.test(l.msg))
    const text = JSON.stringify(logs.lines)
    t.regex(text, new RegExp(parseSshPublicKey(k.line).fingerprint.replace(/[+/]/g, '\\$&')))
    t.regex(text, /the key is not authorized/)
    t.false(text.includes(k.line.split(' ')[1].slice(0, 24)))
    t.false(text.includes(headers['X-DES-Public-Key'].slice(0, 24)))
    t.false(text.includes(headers['X-DES-Signature'].slice(0, 24)))
  } finally {
    await closeServer(server)
  }
})
