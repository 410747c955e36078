// `des serve` for operators: one /metrics for all workers, counters that
// start at 0, des_build_info, the start-up line, the store flags, the default
// worker count from the CPUs the process may use, Cache-Control and the
// content type recorded at pack time. `des serve` runs as a user runs it
// (node bin/des.js, needs `npx tsc` first).

import test from 'ava'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { availableCpus, cgroupCpuQuota, parseCpuMax } from '../src/config/cpus'
import { loadServeConfig } from '../src/config/env'
import { openBackend } from './helpers/backends'
import { runCli } from './helpers/cli'
import { closeServer, listenLocal, payload, tempDir, writeStore, type TestFile } from './helpers/store'
import { createServer } from '../src/serve/server'
import { startServe } from './helpers/serve-process'

const DAY = '2024-03-01T10:00:00Z'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { version } = require('../package.json') as { version: string }

/** One GET on a connection of its own (so the cluster hands it to either worker). */
function getFresh(url: string): Promise<{ status: number; body: Buffer; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), headers: res.headers }))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

/** `name{labels} value` lines of a scrape, as a map from the series to its value. */
function series(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

async function sampleStore(): Promise<{ dir: string; files: TestFile[] }> {
  const dir = tempDir('des-ops')
  const files: TestFile[] = []
  for (let i = 0; i < 12; i++) files.push({ uid: `f${i}`, createdAt: DAY, data: payload(300 + i, i) })
  await writeStore(dir, files)
  return { dir, files }
}

test('--workers 2: every scrape of /metrics counts the retrievals of both workers, histogram buckets written as the reference writes them', async (t) => {
  const { dir, files } = await sampleStore()
  const s = await startServe(['--workers', '2', '--base-dir', dir], {}, 2)
  try {
    const base = `http://127.0.0.1:${s.port}`
    const rs = await Promise.all(files.map((f) => getFresh(`${base}/files/${f.uid}?created_at=${DAY}`)))
    t.true(rs.every((r) => r.status === 200))
    await getFresh(`${base}/files/nope?created_at=${DAY}`)
    // Both workers answered (a request id starts with its process's own prefix)...
    const servedBy = new Set(rs.map((r) => String(r.headers['x-request-id']).split('-')[0]))
    t.is(servedBy.size, 2, 'both workers answered requests')
    // ...and every scrape, whichever worker takes it, shows them all.
    for (let i = 0; i < 6; i++) {
      const scrape = await getFresh(`${base}/metrics`)
      t.is(scrape.status, 200)
      const m = series(scrape.body.toString())
      t.is(m.get('des_retrievals_total{backend="local",status="ok",code="200"}'), files.length, `scrape ${i}`)
      t.is(m.get('des_retrievals_total{backend="local",status="error",code="404"}'), 1, `scrape ${i}`)
      t.is(m.get('des_retrieval_seconds_count{backend="local"}'), files.length + 1, `scrape ${i}`)
      // The bounds and `le` text of the reference's des_retrieval_seconds, summed over the workers.
      const le = [...m.keys()].filter((k) => k.startsWith('des_retrieval_seconds_bucket{')).map((k) => /le="([^"]*)"/.exec(k)![1])
      t.deepEqual(le, ['0.005', '0.01', '0.025', '0.05', '0.075', '0.1', '0.25', '0.5', '0.75', '1.0', '2.5', '5.0', '7.5', '10.0', '+Inf'], `scrape ${i}`)
      t.is(m.get('des_retrieval_seconds_bucket{le="10.0",backend="local"}'), files.length + 1, `scrape ${i}`)
      t.is(m.get('des_migration_duration_seconds_bucket{le="300.0"}'), 0, `scrape ${i}`)
    }
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
})

test('counters with known label values are exported at 0 before anything happens; des_build_info says what runs', async (t) => {
  const { dir } = await sampleStore()
  const s = await startServe(['--workers', '1', '--base-dir', dir], {})
  try {
    const m = series((await getFresh(`http://127.0.0.1:${s.port}/metrics`)).body.toString())
    for (const code of ['200', '404', '502', '503']) t.is(m.get(`des_retrievals_total{backend="local",status="${code === '200' ? 'ok' : 'error'}",code="${code}"}`), 0, code)
    t.is(m.get('des_corrupt_reads_total{backend="local"}'), 0)
    t.is(m.get('des_index_cache_total{result="hit"}'), 0)
    t.is(m.get('des_index_cache_total{result="miss"}'), 0)
    const info = [...m].filter(([k]) => k.startsWith('des_build_info{'))
    t.is(info.length, 1)
    t.is(info[0][1], 1)
    t.regex(info[0][0], new RegExp(`version="${version.replace(/\./g, '\\.')}"`))
    t.regex(info[0][0], new RegExp(`node="${process.version.slice(1).replace(/\./g, '\\.')}"`))
    t.regex(info[0][0], /commit="([0-9a-f]{40}|unknown)"/)
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
})

test('des_build_info is reported once by a cluster, not once per worker', async (t) => {
  const { dir } = await sampleStore()
  const s = await startServe(['--workers', '2', '--base-dir', dir], {}, 2)
  try {
    const m = series((await getFresh(`http://127.0.0.1:${s.port}/metrics`)).body.toString())
    const info = [...m].filter(([k]) => k.startsWith('des_build_info{'))
    t.deepEqual(
      info.map(([, v]) => v),
      [1],
    )
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
})

test('the start-up line names backend, store, layout, n_bits, workers and cache sizes; the store flags win over the variables', async (t) => {
  const dir = tempDir('des-ops-flags')
  const file = { uid: 'n4', createdAt: DAY, data: payload(500, 3) }
  await writeStore(dir, [file], { nBits: 4 })
  // The variables name another (missing) store and other routing bits: the flags win.
  const s = await startServe(['--workers', '1', '--base-dir', dir, '--n-bits', '4', '--layout', 'nested'], {
    DES_BASE_DIR: path.join(dir, 'not-here'),
    DES_N_BITS: '8',
    DES_INDEX_CACHE_BYTES: '1048576',
    DES_PAYLOAD_CACHE_BYTES: '2097152',
  })
  try {
    const up = s.lines.find((l) => /listening/.test(l.msg))!
    t.like(up, { backend: 'local', store: path.resolve(dir), layout: 'nested', nBits: 4, workers: 1, indexCacheBytes: 1048576, payloadCacheBytes: 2097152 })
    t.regex(up.msg, new RegExp(`local store ${dir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, nested layout, n_bits 4, 1 worker, index cache 1 MiB, payload cache 2 MiB`))
    const r = await getFresh(`http://127.0.0.1:${s.port}/files/n4?created_at=${DAY}`)
    t.is(r.status, 200, 'routed with --n-bits 4, not DES_N_BITS=8')
    t.true(r.body.equals(file.data))
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
  const bad = await runCli(['serve', '--port', '0', '--base-dir', dir, '--backend', 's3'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /--base-dir .* is for --backend local/)
})

test('a missing local base directory stops des serve at start-up, naming it', async (t) => {
  const gone = path.join(tempDir('des-ops-gone'), 'store')
  const r = await runCli(['serve', '--port', '0'], { env: { DES_BASE_DIR: gone } })
  t.is(r.code, 6)
  t.is(r.stdout.length, 0)
  t.regex(r.stderr, new RegExp(`base directory ${gone.replace(/[/.]/g, '\\$&')} does not exist`))
  const notDir = path.join(tempDir('des-ops-file'), 'file')
  fs.writeFileSync(notDir, 'x')
  const r2 = await runCli(['serve', '--port', '0', '--base-dir', notDir])
  t.is(r2.code, 2)
  t.regex(r2.stderr, /is not a directory/)
})

test('default workers: the CPUs this process may use, a cgroup quota included (1 in a 1-CPU pod)', (t) => {
  const files = (map: Record<string, string>) => (f: string) => map[f]
  t.is(parseCpuMax('max 100000'), undefined)
  t.is(parseCpuMax('100000 100000'), 1)
  t.is(parseCpuMax('150000 100000\n'), 1.5)
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '50000 100000' })), 0.5)
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), undefined)
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), 2)
  // A 1-CPU pod on a 16-core node: one worker. Half a CPU: still one. No limit: every core.
  t.is(availableCpus(files({ '/sys/fs/cgroup/cpu.max': '100000 100000' }), 16), 1)
  t.is(availableCpus(files({ '/sys/fs/cgroup/cpu.max': '50000 100000' }), 16), 1)
  t.is(availableCpus(files({ '/sys/fs/cgroup/cpu.max': '250000 100000' }), 16), 2)
  t.is(availableCpus(files({ '/sys/fs/cgroup/cpu.max': 'max 100000' }), 16), 16)
  t.is(availableCpus(files({}), 4), 4)
  t.is(availableCpus(files({ '/sys/fs/cgroup/cpu.max': '400000 100000' }), 2), 2, 'never more than the CPUs there are')
  // des serve's default is this machine's answer; DES_WORKERS or `auto` as before.
  t.is(loadServeConfig({}).workers, availableCpus())
  t.is(loadServeConfig({ DES_WORKERS: 'auto' }).workers, availableCpus())
  t.is(loadServeConfig({ DES_WORKERS: '3' }).workers, 3)
  t.throws(() => loadServeConfig({ DES_WORKERS: '0' }), { message: /DES_WORKERS/ })
})

test('des serve with no DES_WORKERS starts one worker per available CPU', async (t) => {
  const { dir } = await sampleStore()
  const want = availableCpus()
  const s = await startServe(['--base-dir', dir], {}, want)
  try {
    const up = s.lines.filter((l) => /listening/.test(l.msg))
    t.is(up.length, want)
    for (const l of up) t.is(l.workers, want)
  } finally {
    s.child.kill('SIGTERM')
    t.is(await s.exit, 0)
  }
})

test('DES_CACHE_CONTROL is sent on 200, 206 and 304 file responses, and nothing when unset', async (t) => {
  const dir = tempDir('des-ops-cc')
  await writeStore(dir, [{ uid: 'c', createdAt: DAY, data: payload(2000, 9) }])
  const store = (await openBackend('local', dir)).store()
  for (const cacheControl of ['public, max-age=86400, immutable', undefined]) {
    const server = createServer({ store, cacheControl })
    const base = await listenLocal(server)
    try {
      const url = `${base}/files/c?created_at=${DAY}`
      const full = await fetch(url)
      t.is(full.status, 200)
      const etag = full.headers.get('etag')!
      const part = await fetch(url, { headers: { range: 'bytes=0-9' } })
      t.is(part.status, 206)
      const same = await fetch(url, { headers: { 'if-none-match': etag } })
      t.is(same.status, 304)
      for (const r of [full, part, same]) t.is(r.headers.get('cache-control'), cacheControl ?? null, `${r.status}`)
      const missing = await fetch(`${base}/files/none?created_at=${DAY}`)
      t.is(missing.status, 404)
      t.is(missing.headers.get('cache-control'), null, 'not on errors')
    } finally {
      await closeServer(server)
    }
  }
  t.is(loadServeConfig({ DES_CACHE_CONTROL: ' max-age=60 ' }).cacheControl, 'max-age=60')
  t.is(loadServeConfig({}).cacheControl, undefined)
  t.throws(() => loadServeConfig({ DES_CACHE_CONTROL: 'max-age=60\r\nX-Evil: 1' }), { message: /DES_CACHE_CONTROL/ })
})

test('des pack records the content type from the extension unless meta gives one, and des serve sends it', async (t) => {
  const dir = tempDir('des-ops-ct')
  const src = path.join(dir, 'src')
  fs.mkdirSync(src)
  const rows = [
    { uid: 'notes', file: 'notes.txt', data: 'plain text\n', want: 'text/plain' },
    { uid: 'record', file: 'record.json', data: '{"a":1}', want: 'application/json' },
    { uid: 'table.csv', file: 'blob', data: 'a,b\n1,2\n', want: 'text/csv' },
    { uid: 'typed', file: 'typed.txt', data: '<p>hi</p>', meta: { content_type: 'text/html; charset=utf-8' }, want: 'text/html; charset=utf-8' },
    { uid: 'raw', file: 'raw', data: 'no extension anywhere', want: 'application/octet-stream' },
  ]
  for (const r of rows) fs.writeFileSync(path.join(src, r.file), r.data)
  const manifest = path.join(dir, 'manifest.json')
  fs.writeFileSync(manifest, JSON.stringify(rows.map((r) => ({ uid: r.uid, created_at: DAY, source_path: path.join(src, r.file), ...(r.meta ? { meta: r.meta } : {}) }))))
  const out = path.join(dir, 'store')
  const packed = await runCli(['pack', '--input-json', manifest, '--output-dir', out, '--n-bits', '8'])
  t.is(packed.code, 0, packed.stderr)
  const server = createServer({ store: (await openBackend('local', out)).store() })
  const base = await listenLocal(server)
  try {
    for (const r of rows) {
      const res = await fetch(`${base}/files/${encodeURIComponent(r.uid)}?created_at=${DAY}`)
      t.is(res.status, 200, r.uid)
      t.is(res.headers.get('content-type'), r.want, r.uid)
      t.is(await res.text(), r.data)
    }
  } finally {
    await closeServer(server)
  }
})
