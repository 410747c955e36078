// `des serve` as a user runs it (node bin/des.js, needs `npx tsc` first):
// start-up, config refusal, multi-S3 zones, graceful SIGTERM with a request
// in flight, --workers, and S3 going away mid-run (a private MinIO).

import test from 'ava'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { promisify } from 'node:util'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { S3Source } from '../src/storage/s3'
import { createS3Client } from '../src/storage/s3-client'
import { LocalSource } from '../src/storage/local'
import { singleSource } from '../src/storage/source'
import { Store } from '../src/store/store'
import { createServer, unreadLayoutNotice } from '../src/serve/server'
import { autoPayloadCacheBytes } from '../src/config/memory'
import { runCli } from './helpers/cli'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { closeServer, listenLocal, payload, tempDir, uploadDir, writeStore, type TestFile } from './helpers/store'
import { startServe } from './helpers/serve-process'

const DAY = '2024-03-01T10:00:00Z'
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function sampleDir(): Promise<{ dir: string; files: TestFile[]; big: TestFile }> {
  const dir = tempDir()
  const files: TestFile[] = []
  for (let i = 0; i < 30; i++) files.push({ uid: String(i), createdAt: DAY, data: payload(500 + i * 50, i) })
  const big = { uid: 'big', createdAt: DAY, data: payload(8_000_000, 1) }
  await writeStore(dir, [...files, big], { writer: { bigFileThreshold: 1_000_000 } })
  return { dir, files, big }
}

test('des serve answers on its port and refuses a bad configuration at start-up, naming it', async (t) => {
  const { dir, files } = await sampleDir()
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_LOG_LEVEL: 'info' })
  try {
    const r = await fetch(`${s.url}/files/${files[4].uid}?created_at=${DAY}`)
    t.is(r.status, 200)
    t.true(Buffer.from(await r.arrayBuffer()).equals(files[4].data))
    t.is((await fetch(`${s.url}/health`)).status, 200)
    // No DES_PAYLOAD_CACHE_BYTES: sized from this machine's memory limit.
    t.is(s.lines.find((l) => /listening/.test(l.msg))?.payloadCacheBytes, autoPayloadCacheBytes(1))
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
  const zones = path.join(dir, 'zones.yaml')
  fs.writeFileSync(zones, 'n_bits: 4\nzones:\n  - {name: a, range: {start: 0, end: 9}, s3: {bucket: x}}\n  - {name: b, range: {start: 9, end: 15}, s3: {bucket: y}}\n')
  const bad = await runCli(['serve', '--port', '0'], { env: { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones } })
  t.is(bad.code, 2)
  t.regex(bad.stderr, /zones a \(0\.\.9\) and b \(9\.\.15\) overlap/)
  const bad2 = await runCli(['serve', '--port', '0'], { env: { DES_BASE_DIR: dir, DES_INDEX_CACHE_BYTES: 'lots' } })
  t.is(bad2.code, 2)
  t.regex(bad2.stderr, /DES_INDEX_CACHE_BYTES/)
})

test("the original's DES_REQUIRE_AUTHENTICATION: with neither API keys nor authorized keys des serve refuses to start (it never serves open); with API keys a request without one is 401", async (t) => {
  const { dir, files } = await sampleDir()
  const open = await runCli(['serve', '--port', '0'], { env: { DES_BASE_DIR: dir, DES_REQUIRE_AUTHENTICATION: 'true' } })
  t.is(open.code, 2)
  t.regex(open.stderr, /DES_REQUIRE_AUTHENTICATION is true but no key is configured/)
  const typo = await runCli(['serve', '--port', '0'], { env: { DES_BASE_DIR: dir, DES_REQUIRE_AUTHENTICATION: 'ture' } })
  t.is(typo.code, 2)
  t.regex(typo.stderr, /DES_REQUIRE_AUTHENTICATION/)
  const key = 'a-long-enough-key'
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_REQUIRE_AUTHENTICATION: 'y', DES_API_KEYS: key })
  try {
    const url = `${s.url}/files/${files[0].uid}?created_at=${DAY}`
    t.is((await fetch(url)).status, 401)
    t.is((await fetch(url, { headers: { 'X-API-Key': key } })).status, 200)
  } finally {
    t.is(await s.stop(), 0)
  }
})

test("the original's deletion API key is a start-up warning (its deletions are honoured, DELETE stays 405); its extended retention settings are a warning", async (t) => {
  const { dir, files } = await sampleDir()
  const del = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_DELETE_API_KEY: 'delete-key' })
  try {
    t.is((await fetch(`${del.url}/files/${files[0].uid}?created_at=${DAY}`)).status, 200)
    t.is((await fetch(`${del.url}/files/${files[0].uid}?created_at=${DAY}`, { method: 'DELETE', headers: { 'X-API-Key': 'delete-key' } })).status, 405)
  } finally {
    t.is(await del.stop(), 0)
  }
  t.regex(del.stderr(), /DES_DELETE_API_KEY is set: des serve has no deletion API \(DELETE \/files\/\.\.\. answers 405\); files the original DES deleted .* are answered 410 File deleted/)
  t.false(del.stderr().includes('delete-key'))
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_EXT_RETENTION_BUCKET: 'retained', DES_EXT_RETENTION_PREFIX: '_ext_retention' })
  try {
    t.is((await fetch(`${s.url}/files/${files[0].uid}?created_at=${DAY}`)).status, 200)
  } finally {
    t.is(await s.stop(), 0)
  }
  t.regex(s.stderr(), /DES_EXT_RETENTION_BUCKET and DES_EXT_RETENTION_PREFIX are set: des serve does not read the original's extended retention copies/)
})

test("a store of the original's flat layout served with DES_LAYOUT left at nested (the original's config has no DES_LAYOUT) is a start-up warning, not a server that answers 404 for every file in silence", async (t) => {
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, '20240501_01_0000.des'), 'listed, not read')
  const sources = singleSource(new LocalSource(dir))
  t.regex((await unreadLayoutNotice({ sources, layouts: ['nested'] }))!, /the store holds shards of the original's flat layout \(20240501_01_0000\.des\), which DES_LAYOUT=nested does not read.*set DES_LAYOUT=flat/)
  t.is(await unreadLayoutNotice({ sources, layouts: ['flat'] }), undefined)
  t.is(await unreadLayoutNotice({ sources, layouts: ['nested', 'flat'] }), undefined)
  const { dir: nested } = await sampleDir()
  t.is(await unreadLayoutNotice({ sources: singleSource(new LocalSource(nested)), layouts: ['nested'] }), undefined)
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir })
  t.is(await s.stop(), 0)
  t.regex(s.stderr(), /\[DES_LAYOUT_UNREAD\] Warning: the store holds shards of the original's flat layout/)
})

/**
 * GETs the 8 MB BigFile `big` and pauses mid-body, so the response is in
 * flight when `signal` lands; reads on once the server says it is finishing
 * in-flight requests. Resolves to what the client got.
 */
function signalledMidBody(s: Awaited<ReturnType<typeof startServe>>, signal: () => void): Promise<{ status: number; body: Buffer }> {
  const received: Buffer[] = []
  return new Promise((resolve, reject) => {
    http
      .get(`${s.url}/files/big?created_at=${DAY}`, (res) => {
        res.pause()
        signal()
        void s.lineMatching(/shutting down:/).then(() => res.resume())
        res.on('data', (c: Buffer) => received.push(c))
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(received) }))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

test('SIGTERM: stops accepting, finishes the request in flight, exits 0', async (t) => {
  const { dir, big } = await sampleDir()
  const s = await startServe(['--workers', '1'], { DES_BASE_DIR: dir, DES_LOG_LEVEL: 'info' })
  const { status, body } = await signalledMidBody(s, () => s.child.kill('SIGTERM'))
  t.is(status, 200)
  t.is(sha(body), sha(big.data))
  t.is(await s.exit, 0)
  t.true(s.lines.some((l) => /shutting down/.test(l.msg)))
  await t.throwsAsync(fetch(`${s.url}/health`), undefined, 'no longer accepting')
})

test('--workers 2 runs two processes on one port, and SIGTERM stops them all with exit 0', async (t) => {
  const { dir, files } = await sampleDir()
  const s = await startServe(['--workers', '2'], { DES_BASE_DIR: dir, DES_LOG_LEVEL: 'info' }, 2)
  try {
    const pids = new Set(s.lines.filter((l) => /listening/.test(l.msg)).map((l) => l.pid))
    t.is(pids.size, 2)
    t.false(pids.has(s.child.pid))
    // Two workers share the automatic payload-cache budget.
    for (const l of s.lines.filter((l) => /listening/.test(l.msg))) t.is(l.payloadCacheBytes, autoPayloadCacheBytes(2))
    const rs = await Promise.all(files.map((f) => fetch(`${s.url}/files/${f.uid}?created_at=${DAY}`).then(async (r) => [r.status, Buffer.from(await r.arrayBuffer()).equals(f.data)])))
    t.true(rs.every(([st, ok]) => st === 200 && ok))
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
})

test('--workers 2 and Ctrl-C (SIGINT to the primary and every worker at once): the request in flight is finished, exit 0', async (t) => {
  const { dir, big } = await sampleDir()
  const s = await startServe(['--workers', '2'], { DES_BASE_DIR: dir, DES_LOG_LEVEL: 'info' }, 2)
  const workers = [...new Set(s.lines.filter((l) => /listening/.test(l.msg)).map((l) => l.pid as number))]
  // What a terminal's Ctrl-C does: the whole foreground process group gets SIGINT.
  const { status, body } = await signalledMidBody(s, () => [s.child.pid!, ...workers].forEach((pid) => process.kill(pid, 'SIGINT')))
  t.is(status, 200)
  t.is(sha(body), sha(big.data))
  t.is(await s.exit, 0)
  t.false(s.lines.some((l) => /second signal/.test(l.msg)), 'a worker did not take the two as two signals')
})

test('des serve with DES_BACKEND=multi_s3: two buckets as two zones', async (t) => {
  const env = s3TestEnv()
  const client = testS3Client()
  const [a, b] = [await freshBucket(client, 'des-cli-za'), await freshBucket(client, 'des-cli-zb')]
  const dir = tempDir()
  const files: TestFile[] = []
  for (let i = 0; i < 32; i++) files.push({ uid: `${i}`, createdAt: DAY, data: payload(300 + i, i) })
  await writeStore(dir, files, { nBits: 4 })
  await uploadDir(client, a, dir, '', (k) => /\/[0-7]\.des$/.test(k))
  await uploadDir(client, b, dir, '', (k) => /\/[89A-F]\.des$/.test(k))
  const zones = path.join(dir, 'zones.json')
  fs.writeFileSync(
    zones,
    JSON.stringify({
      n_bits: 4,
      zones: [
        { name: 'a', range: { start: 0, end: 7 }, s3: { bucket: a, region_name: 'us-east-1', endpoint_url: env.endpoint } },
        { name: 'b', range: { start: 8, end: 15 }, s3: { bucket: b, region_name: 'us-east-1', endpoint_url: env.endpoint } },
      ],
    }),
  )
  const s = await startServe(['--workers', '1'], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones, DES_N_BITS: '', DES_LOG_LEVEL: 'info' })
  try {
    // The start-up line names the n_bits routing uses: the zones file's 4, not the default 8.
    const started = await s.lineMatching(/listening/)
    t.is(started.nBits, 4)
    t.regex(String(started.msg), /, n_bits 4,/)
    for (const f of files) {
      const r = await fetch(`${s.url}/files/${f.uid}?created_at=${DAY}`)
      t.is(r.status, 200, f.uid)
      t.true(Buffer.from(await r.arrayBuffer()).equals(f.data), f.uid)
    }
    t.is((await fetch(`${s.url}/ready`)).status, 200)
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    t.regex(metrics, /des_s3_range_calls_total\{backend="s3",type="tail"\} 16/)
    t.regex(metrics, /des_s3_range_calls_total\{backend="s3",type="payload"\} 32/)
    t.regex(metrics, /des_retrievals_total\{backend="s3",status="ok",code="200"\} 32/)
    t.notRegex(metrics, /backend="multi_s3"/)
  } finally {
    s.child.kill('SIGTERM')
    await s.exit
  }
  // An n_bits set on purpose that differs from the zones file's is refused at start-up, naming both
  // (killed after 15 s: a server that starts anyway fails the test instead of hanging it).
  const serve = (args: string[], vars: NodeJS.ProcessEnv) =>
    runCli(['serve', '--host', '127.0.0.1', '--port', '0', ...args], { env: { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones, DES_N_BITS: '', ...vars }, killAfterMs: 15_000 })
  const byFlag = await serve(['--n-bits', '6'], {})
  t.is(byFlag.code, 2, byFlag.stderr)
  t.regex(byFlag.stderr, /zones file .*zones\.json: it routes with n_bits 4, while --n-bits sets n_bits 6/)
  const byVar = await serve(['--workers', '2'], { DES_N_BITS: '8' })
  t.is(byVar.code, 2, byVar.stderr)
  t.regex(byVar.stderr, /zones file .*zones\.json: it routes with n_bits 4, while DES_N_BITS sets n_bits 8/)
  // Set alike: no conflict; the primary of --workers 2 names the routing n_bits too.
  const two = await startServe(['--workers', '2', '--n-bits', '4'], { DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: zones, DES_N_BITS: '', DES_LOG_LEVEL: 'info' }, 2)
  try {
    t.is((await two.lineMatching(/des serve starting/)).nBits, 4)
    const f = files[9]
    t.is((await fetch(`${two.url}/files/${f.uid}?created_at=${DAY}`)).status, 200)
  } finally {
    await two.stop()
  }
})

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createNetServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as AddressInfo).port
      srv.close(() => resolve(p))
    })
  })
}

test('S3 stopped mid-run: 503 while it is down, served again once it is back', async (t) => {
  // A MinIO of our own (same script, own port and data), so stopping it does
  // not pull the shared one from under other suites.
  const { minioScript } = s3TestEnv()
  t.truthy(minioScript, 'DES_MINIO_SCRIPT is set by scripts/services/minio.sh')
  const port = await freePort()
  const servicesDir = tempDir('des-minio-fault')
  const minio = (cmd: string) => promisify(execFile)('bash', [minioScript!, cmd], { env: { ...process.env, DES_SERVICES_DIR: servicesDir, DES_MINIO_PORT: String(port) } })
  await minio('start')
  try {
    const endpoint = `http://127.0.0.1:${port}`
    const admin = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true })
    await admin.send(new CreateBucketCommand({ Bucket: 'fault' }))
    const dir = tempDir()
    const files: TestFile[] = []
    for (let i = 0; i < 8; i++) files.push({ uid: `${i}`, createdAt: DAY, data: payload(1000 + i, i) })
    await writeStore(dir, files)
    await uploadDir(admin, 'fault', dir)
    admin.destroy()
    const client = createS3Client({ region: 'us-east-1', endpoint, forcePathStyle: true }, { maxAttempts: 2, connectionTimeoutMs: 1000, requestTimeoutMs: 3000 })
    const store = new Store({ sources: singleSource(new S3Source(client, { bucket: 'fault', prefix: '' })), nBits: 8 })
    const server = createServer({ store })
    const url = await listenLocal(server)
    const get = async (uid: string) => {
      const r = await fetch(`${url}/files/${uid}?created_at=${DAY}`)
      return { status: r.status, body: Buffer.from(await r.arrayBuffer()) }
    }
    try {
      t.true((await get('0')).body.equals(files[0].data)) // shard 00 now cached
      await minio('stop')
      const warm = await get('0') // cached index: the payload GET fails
      t.is(warm.status, 503)
      const body = JSON.parse(warm.body.toString())
      t.is(body.code, 'DES_UNAVAILABLE')
      t.regex(body.error, /unreachable/)
      t.is((await get('1')).status, 503) // cold: the tail GET fails
      t.is((await fetch(`${url}/ready`)).status, 503)
      t.is((await fetch(`${url}/health`)).status, 200)
      await minio('start')
      for (const f of files) {
        const r = await get(f.uid)
        t.is(r.status, 200, f.uid)
        t.true(r.body.equals(f.data))
      }
      t.is((await fetch(`${url}/ready`)).status, 200)
    } finally {
      await closeServer(server)
    }
  } finally {
    await minio('stop').catch(() => undefined)
    fs.rmSync(servicesDir, { recursive: true, force: true })
  }
})
