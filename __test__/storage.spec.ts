// Byte sources (local, S3 on the real MinIO, zones) and the configuration
// they are built from.

import test from 'ava'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { backendNotices, loadConfig, loadServeConfig } from '../src/config/env'
import { loadStoreConfig } from '../src/config/store-flags'
import { loadZones, parseZones } from '../src/config/zones'
import { DesError, errorCode } from '../src/errors'
import { LocalSource } from '../src/storage/local'
import { S3Source, s3Error } from '../src/storage/s3'
import { isTransientKind, s3ErrorKind } from '../src/storage/s3-errors'
import { isS3Url, parseS3Url, totalFromContentRange } from '../src/storage/s3-url'
import { ZonedSources, zonedS3Sources } from '../src/storage/zones'
import { Store } from '../src/store/store'
import { DamagedShards, openShard } from '../src/store/shard'
import { singleSource, type ByteSource } from '../src/storage/source'
import { createServer } from '../src/serve/server'
import { createStore } from '../src/store'
import { locateShard } from '../src/native'
import { freshBucket, s3TestEnv, testS3Client } from './helpers/services'
import { closeServer, listenLocal, payload, tempDir, uploadDir, writeStore, type TestFile } from './helpers/store'
import { clientOf } from './helpers/fake-s3'
import { createS3Client } from '../src/storage/s3-client'

const DAY = '2024-03-01T10:00:00Z'

function zonesYaml(ranges: Array<[number, number]>, nBits = 4): string {
  return [`n_bits: ${nBits}`, 'zones:', ...ranges.flatMap(([s, e], i) => [`  - name: z${i}`, `    range: {start: ${s}, end: ${e}}`, `    s3: {bucket: b${i}, region_name: us-east-1}`])].join('\n')
}

test('a zones file covering every shard index once is accepted (YAML and JSON)', (t) => {
  const z = parseZones(zonesYaml([[8, 15], [0, 7]]), 'zones.yaml')
  t.is(z.nBits, 4)
  t.deepEqual(z.zones.map((x) => [x.name, x.start, x.end, x.s3.bucket]), [
    ['z1', 0, 7, 'b1'],
    ['z0', 8, 15, 'b0'],
  ])
  const json = JSON.stringify({ n_bits: 4, zones: [{ name: 'all', range: { start: 0, end: 15 }, s3: { bucket: 'x', endpoint_url: 'http://127.0.0.1:9000', prefix: 'p' } }] })
  const j = parseZones(json, 'zones.json')
  t.is(j.zones[0].s3.prefix, 'p/')
  t.true(j.zones[0].s3.forcePathStyle)
})

test('a zones file with overlapping or out-of-range ranges is refused at start-up, naming the problem', (t) => {
  const refuse = (text: string, re: RegExp) => {
    const err = t.throws(() => parseZones(text, 'zones.yaml'))
    t.is(errorCode(err), 'DES_CONFIG')
    t.regex(err!.message, re)
  }
  refuse(zonesYaml([[0, 8], [8, 15]]), /zones z0 \(0\.\.8\) and z1 \(8\.\.15\) overlap/)
  refuse(zonesYaml([[0, 7], [8, 16]]), /zone z1: range 8\.\.16 is outside 0\.\.15/)
  refuse(zonesYaml([[5, 3], [0, 15]]), /range.start 5 is after range.end 3/)
  refuse(zonesYaml([[0, 15]], 3), /n_bits must be 4\.\.16/)
  refuse('n_bits: 4\nzones: []', /non-empty/)
  refuse('n_bits: 4\nzones:\n  - name: a\n    range: {start: 0, end: 15}\n    s3: {}', /zone a: s3.bucket is required/)
  refuse('zones: [ {', /not valid YAML/)
  const err = t.throws(() => loadZones('/nonexistent/zones.yaml'))
  t.regex(err!.message, /DES_ZONES_CONFIG=\/nonexistent\/zones.yaml: cannot read it/)
})

test('a zone s3 setting that YAML reads as a number or a word is refused naming it, never taken for no prefix or the default', (t) => {
  const zone = (s3: string) => `n_bits: 4\nzones:\n  - name: a\n    range: {start: 0, end: 15}\n    s3: {${s3}}`
  const refuse = (s3: string, re: RegExp) => {
    const err = t.throws(() => parseZones(zone(s3), 'zones.yaml'))
    t.is(errorCode(err), 'DES_CONFIG')
    t.regex(err!.message, re)
  }
  // Unquoted, `prefix: 2024` is a number: the original stops on it; it must not mean the bucket root.
  refuse('bucket: b, prefix: 2024', /zone a: s3.prefix must be a string, got 2024/)
  refuse('bucket: 123456', /zone a: s3.bucket must be a string, got 123456/)
  refuse('bucket: b, region_name: 1', /zone a: s3.region_name must be a string/)
  refuse('bucket: b, endpoint_url: 9000', /zone a: s3.endpoint_url must be a string/)
  refuse('bucket: b, endpoint_url: "http://127.0.0.1:9000", force_path_style: "false"', /zone a: s3.force_path_style must be true or false/)
  t.is(parseZones(zone('bucket: "123456", prefix: "2024"'), 'zones.yaml').zones[0].s3.prefix, '2024/')
  t.is(parseZones(zone('bucket: b, prefix: null'), 'zones.yaml').zones[0].s3.prefix, '')
})

test('a zone without region_name takes the environment\'s region, as the original\'s clients do; its own region_name wins', (t) => {
  const zone = (s3: string) => `n_bits: 4\nzones:\n  - name: a\n    range: {start: 0, end: 15}\n    s3: {${s3}}`
  const region = (s3: string, env: Record<string, string>) => parseZones(zone(s3), 'zones.yaml', undefined, env).zones[0].s3.region
  t.is(region('bucket: b', { AWS_REGION: 'eu-west-1' }), 'eu-west-1')
  t.is(region('bucket: b', { AWS_DEFAULT_REGION: 'eu-central-1' }), 'eu-central-1')
  t.is(region('bucket: b', {}), 'us-east-1')
  t.is(region('bucket: b, region_name: ap-south-1', { AWS_REGION: 'eu-west-1' }), 'ap-south-1')
})

test('a zones file without n_bits is read as 8, as the original reads it, whatever DES_N_BITS says; with another n_bits set it is refused, not guessed', (t) => {
  const noNBits = zonesYaml([[0, 127], [128, 255]]).replace(/^n_bits: \d+\n/, '')
  t.is(parseZones(noNBits, 'zones.yaml').nBits, 8)
  t.deepEqual(parseZones(noNBits, 'zones.yaml').uncovered, [])
  t.is(parseZones(noNBits, 'zones.yaml', { nBits: 8, from: 'DES_N_BITS' }).nBits, 8)
  const err = t.throws(() => parseZones(noNBits, 'zones.yaml', { nBits: 10, from: 'DES_N_BITS' }))
  t.is(errorCode(err), 'DES_CONFIG')
  t.regex(err!.message, /zones file zones\.yaml: it gives no n_bits, which the original reads as 8, while DES_N_BITS sets n_bits 10/)
})

test('a zones file routes with its own n_bits: one set on purpose elsewhere that differs is refused naming both, one left at its default is not', (t) => {
  const four = zonesYaml([[0, 15]])
  // Nothing set on purpose (DES_N_BITS unset, no --n-bits, no packer.n_bits): the file decides.
  t.is(parseZones(four, 'zones.yaml').nBits, 4)
  t.is(parseZones(four, 'zones.yaml', { nBits: 4, from: '--n-bits' }).nBits, 4)
  for (const from of ['DES_N_BITS', '--n-bits', 'packer.n_bits of m.yaml']) {
    const err = t.throws(() => parseZones(four, 'zones.yaml', { nBits: 8, from }))
    t.is(errorCode(err), 'DES_CONFIG')
    t.is(err!.message, `zones file zones.yaml: it routes with n_bits 4, while ${from} sets n_bits 8; set them alike, or leave ${from} unset and the zones file decides`)
  }
  // The config loaders tell a value set on purpose from the default.
  t.is(loadConfig({}).nBitsFrom, undefined)
  t.is(loadConfig({ DES_N_BITS: ' ' }).nBitsFrom, undefined)
  t.is(loadConfig({ DES_N_BITS: '8' }).nBitsFrom, 'DES_N_BITS')
  t.is(loadStoreConfig({}, {}).nBitsFrom, undefined)
  t.is(loadStoreConfig({ nBits: 8 }, { DES_N_BITS: '6' }).nBitsFrom, '--n-bits')
  t.is(loadStoreConfig({ nBits: 8 }, { DES_N_BITS: '6' }).nBits, 8)
})

test('a zones file that leaves shard indexes uncovered is accepted (as the reference accepts it) and names the gaps', (t) => {
  t.deepEqual(parseZones(zonesYaml([[0, 6], [8, 13]]), 'zones.yaml').uncovered, [
    { start: 7, end: 7 },
    { start: 14, end: 15 },
  ])
  t.deepEqual(parseZones(zonesYaml([[1, 15]]), 'zones.yaml').uncovered, [{ start: 0, end: 0 }])
  t.deepEqual(parseZones(zonesYaml([[0, 15]]), 'zones.yaml').uncovered, [])
})

test('DES_S3_BUCKET without DES_BACKEND means the S3 backend, as the original picks it; DES_BACKEND or --base-dir still decide', (t) => {
  t.is(loadConfig({ DES_S3_BUCKET: 'archive' }).backend, 's3')
  t.is(loadConfig({ DES_S3_BUCKET: 'archive' }).s3?.bucket, 'archive')
  t.is(loadConfig({}).backend, 'local')
  t.is(loadConfig({ DES_S3_BUCKET: ' ' }).backend, 'local')
  t.is(loadConfig({ DES_S3_BUCKET: 'archive', DES_BACKEND: 'local' }).backend, 'local')
  t.is(loadStoreConfig({ baseDir: '/data/des' }, { DES_S3_BUCKET: 'archive' }).backend, 'local')
  // Where the original would serve the bucket instead, des serve says so at start-up.
  t.is(backendNotices({ DES_S3_BUCKET: 'archive', DES_BACKEND: 'Local' }).length, 1)
  t.deepEqual(backendNotices({ DES_S3_BUCKET: 'archive' }), [])
  t.deepEqual(backendNotices({ DES_BACKEND: 'local' }), [])
})

test('serve settings: bad values are refused naming the variable; API keys are kept as hashes', (t) => {
  t.regex(t.throws(() => loadServeConfig({ DES_PORT: '99999' }))!.message, /DES_PORT/)
  t.regex(t.throws(() => loadServeConfig({ DES_LOG_LEVEL: 'loud' }))!.message, /DES_LOG_LEVEL/)
  t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS: 'secret-key-1:write' }))!.message, /unknown scope "write"/)
  t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS: 'short' }))!.message, /shorter than 8/)
  const c = loadServeConfig({ DES_API_KEYS: 'reader-key-1, metrics-key-1:metrics, admin-key-1:read+metrics' })
  t.is(c.apiKeys.length, 3)
  t.deepEqual(c.apiKeys.map((k) => k.scopes), [['read'], ['metrics'], ['read', 'metrics']])
  t.false(JSON.stringify(c).includes('reader-key-1'), 'no plain key kept')
  t.deepEqual(c.authOpenPaths, ['/health', '/ready', '/metrics'])
  t.deepEqual(loadServeConfig({ DES_AUTH_OPEN_PATHS: '' }).authOpenPaths, [])
  const dir = tempDir()
  const file = path.join(dir, 'keys.yaml')
  fs.writeFileSync(file, `keys:\n  - name: app\n    sha256: ${'ab'.repeat(32)}\n    scopes: [read]\n  - name: ops\n    key: ops-key-123\n    scopes: [metrics]\n`)
  const f = loadServeConfig({ DES_API_KEYS_FILE: file })
  t.deepEqual(f.apiKeys.map((k) => [k.name, k.scopes]), [
    ['app', ['read']],
    ['ops', ['metrics']],
  ])
  fs.writeFileSync(file, 'keys:\n  - name: bad\n    sha256: xyz\n')
  t.regex(t.throws(() => loadServeConfig({ DES_API_KEYS_FILE: file }))!.message, /key "bad": sha256 must be 64 hex digits/)
  t.regex(t.throws(() => loadConfig({ DES_BACKEND: 'multi_s3' }))!.message, /DES_ZONES_CONFIG is required/)
  t.true(loadConfig({}).checkBigfileRanges)
  t.false(loadConfig({ DES_CHECK_BIGFILE_RANGES: 'false' }).checkBigfileRanges)
  t.regex(t.throws(() => loadConfig({ DES_CHECK_BIGFILE_RANGES: 'sometimes' }))!.message, /DES_CHECK_BIGFILE_RANGES/)
})

test('S3 errors map to codes: 404 not found, 412 changed, no answer unavailable, the rest storage', (t) => {
  t.is(s3Error(Object.assign(new Error('x'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }), 'b', 'k').code, 'DES_NOT_FOUND')
  t.is(s3Error(Object.assign(new Error('x'), { name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } }), 'b', 'k').name, 'EtagMismatchError')
  t.is(s3Error(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', $metadata: {} }), 'b', 'k').code, 'DES_UNAVAILABLE')
  t.is(s3Error(Object.assign(new Error('slow'), { name: 'TimeoutError' }), 'b', 'k').code, 'DES_UNAVAILABLE')
  t.is(s3Error(Object.assign(new Error('x'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }), 'b', 'k').code, 'DES_UNAVAILABLE')
  t.is(s3Error(Object.assign(new Error('x'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }), 'b', 'k').code, 'DES_STORAGE')
  t.is(s3Error(Object.assign(new Error('x'), { name: 'InternalError', $metadata: { httpStatusCode: 500 } }), 'b', 'k').code, 'DES_STORAGE')
})

test('one classifier says what every S3 failure was, for reads, uploads and sources alike', (t) => {
  const sdk = (name: string, status?: number, extra: object = {}) => Object.assign(new Error(name), { name, ...(status === undefined ? {} : { $metadata: { httpStatusCode: status } }), ...extra })
  t.is(s3ErrorKind(sdk('NoSuchBucket', 404)), 'no-bucket')
  t.is(s3ErrorKind(sdk('NoSuchKey', 404)), 'missing')
  t.is(s3ErrorKind(sdk('NotFound', 404)), 'missing')
  t.is(s3ErrorKind(sdk('PreconditionFailed', 412)), 'conflict')
  t.is(s3ErrorKind(sdk('ConditionalRequestConflict', 409)), 'conflict')
  t.is(s3ErrorKind(sdk('AccessDenied', 403)), 'forbidden')
  t.is(s3ErrorKind(sdk('Error', undefined, { code: 'ECONNREFUSED', syscall: 'connect' })), 'unreachable')
  t.is(s3ErrorKind(sdk('Error', undefined, { code: 'ENOSPC', syscall: 'write' })), 'local-io')
  t.is(s3ErrorKind(sdk('SlowDown', 503)), 'busy')
  t.is(s3ErrorKind(sdk('TooManyRequests', 429)), 'busy')
  t.is(s3ErrorKind(sdk('InternalError', 500)), 'server')
  t.is(s3ErrorKind(sdk('InvalidArgument', 400)), 'refused')
  t.true(isTransientKind('busy') && isTransientKind('server') && isTransientKind('unreachable'))
  t.false(isTransientKind('missing') || isTransientKind('conflict') || isTransientKind('forbidden') || isTransientKind('refused'))
})

test('s3:// is parsed in one place: a bucket and a non-empty key, any case of the scheme', (t) => {
  t.deepEqual(parseS3Url('s3://b/a/k.bin'), { bucket: 'b', key: 'a/k.bin' })
  t.deepEqual(parseS3Url('S3://b/k'), { bucket: 'b', key: 'k' })
  for (const bad of ['s3://', 's3://b', 's3://b/', 's3:///k', '/data/k', 'http://b/k']) t.is(parseS3Url(bad), null, bad)
  t.true(isS3Url('s3://b'))
  t.false(isS3Url('/s3://b/k'))
  t.is(totalFromContentRange('bytes 0-9/1234'), 1234)
  t.is(totalFromContentRange('bytes */*'), undefined)
  t.is(totalFromContentRange(undefined), undefined)
})

test('LocalSource reads tails and ranges by position and changes its etag when the file is replaced', async (t) => {
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, 'obj'), Buffer.from('0123456789'))
  const src = new LocalSource(dir)
  const tail = await src.getTail('obj', 4)
  t.is(tail.bytes.toString(), '6789')
  t.is(tail.objectSize, 10)
  t.is((await src.getTail('obj', 100)).bytes.toString(), '0123456789')
  t.is((await src.getRange('obj', 2, 3, 'payload')).toString(), '234')
  const s = await src.stream('obj', { start: 5, end: 7 })
  const chunks: Buffer[] = []
  for await (const c of s.body) chunks.push(c as Buffer)
  t.is(Buffer.concat(chunks).toString(), '567')
  t.is(s.objectSize, 10)
  fs.writeFileSync(path.join(dir, 'obj.new'), Buffer.from('abcdefghijk'))
  fs.renameSync(path.join(dir, 'obj.new'), path.join(dir, 'obj'))
  t.not(await src.localEtag('obj'), tail.etag)
  t.is((await t.throwsAsync(src.getRange('obj', 0, 2, 'payload', tail.etag)))!.name, 'EtagMismatchError')
  t.is(errorCode(await t.throwsAsync(src.getTail('missing', 4))), 'DES_NOT_FOUND')
  await src.ping()
  t.is(errorCode(await t.throwsAsync(new LocalSource(path.join(dir, 'nope')).ping())), 'DES_UNAVAILABLE')
})

test('S3Source: one suffix GET for a tail (the whole object when smaller), sizes from Content-Range', async (t) => {
  const client = testS3Client()
  const bucket = await freshBucket(client, 'des-src')
  const body = payload(100_000)
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/big', Body: body }))
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/small', Body: Buffer.from('tiny') }))
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/empty', Body: Buffer.alloc(0) }))
  const src = new S3Source(client, { bucket, prefix: 'p/' })
  const tail = await src.getTail('big', 65536)
  t.true(tail.bytes.equals(body.subarray(100_000 - 65536)))
  t.is(tail.objectSize, 100_000)
  t.truthy(tail.etag)
  const small = await src.getTail('small', 65536)
  t.is(small.bytes.toString(), 'tiny')
  t.is(small.objectSize, 4)
  t.true((await src.getRange('big', 10, 20, 'payload', tail.etag)).equals(body.subarray(10, 30)))
  t.is(errorCode(await t.throwsAsync(src.getTail('missing', 100))), 'DES_NOT_FOUND')
  // AWS answers 416 for a suffix range of an empty object (mapped to DES_CORRUPT), MinIO 200 with nothing.
  const empty = await src.getTail('empty', 100).catch((err) => err)
  t.true(empty.objectSize === 0 || errorCode(empty) === 'DES_CORRUPT')
  t.is((await t.throwsAsync(src.getRange('big', 0, 5, 'payload', '"not-the-etag"')))!.name, 'EtagMismatchError')
  await src.ping()
  const missingBucket = new S3Source(client, { bucket: `${bucket}-none`, prefix: '' })
  t.is(errorCode(await t.throwsAsync(missingBucket.getTail('x', 10))), 'DES_STORAGE')
  t.is(errorCode(await t.throwsAsync(missingBucket.ping())), 'DES_STORAGE')
})

test('S3Source: a server that does not answer is DES_UNAVAILABLE', async (t) => {
  // A port that accepted nothing: bind one, note it, close it.
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port
      s.close(() => resolve(p))
    })
  })
  const client = createS3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true }, { maxAttempts: 1, connectionTimeoutMs: 500 })
  const src = new S3Source(client, { bucket: 'b', prefix: '' })
  const err = await t.throwsAsync(src.getTail('k', 10))
  t.is(errorCode(err), 'DES_UNAVAILABLE')
  t.regex(err!.message, /unreachable/)
  t.is(errorCode(await t.throwsAsync(src.ping())), 'DES_UNAVAILABLE')
})

test('a BigFile Range from an S3-compatible server that ignores Range (a 200 with the whole object) is a 502 before any byte, never the object\'s first bytes as the range; one from byte 0 (a HEAD\'s probe) is the object\'s first bytes', async (t) => {
  const dir = tempDir()
  const big: TestFile = { uid: 'ranged', createdAt: '2024-03-01T10:00:00Z', data: payload(300_000, 11) }
  await writeStore(dir, [big], { writer: { bigFileThreshold: 1000 } })
  // Shards are answered as S3 answers (a suffix or a range: 206); BigFiles whole, Range or not.
  const server = http.createServer((req, res) => {
    const key = decodeURIComponent(req.url!.split('?')[0]).split('/').slice(2).join('/')
    const file = path.join(dir, key)
    if (!fs.existsSync(file)) {
      res.writeHead(404, { 'Content-Type': 'application/xml' })
      return res.end('<Error><Code>NoSuchKey</Code></Error>')
    }
    const data = fs.readFileSync(file)
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '')
    if (m && !key.includes('_bigFiles')) {
      const start = m[1] === '' ? Math.max(0, data.length - Number(m[2])) : Number(m[1])
      const end = m[1] === '' || m[2] === '' ? data.length - 1 : Math.min(Number(m[2]), data.length - 1)
      res.writeHead(206, { 'Content-Length': String(end - start + 1), 'Content-Range': `bytes ${start}-${end}/${data.length}`, ETag: '"v1"' })
      return res.end(data.subarray(start, end + 1))
    }
    res.writeHead(200, { 'Content-Length': String(data.length), ETag: '"v1"' })
    res.end(data)
  })
  const client = await clientOf(t, server)
  for (const checkBigfileRanges of [true, false]) {
    const store = new Store({ sources: singleSource(new S3Source(client, { bucket: 'bkt', prefix: '' })), nBits: 8, checkBigfileRanges })
    const srv = createServer({ store })
    const url = await listenLocal(srv)
    try {
      const whole = await fetch(`${url}/files/${big.uid}?created_at=${big.createdAt}`)
      t.is(whole.status, 200)
      t.true(Buffer.from(await whole.arrayBuffer()).equals(big.data))
      // From the first byte, the whole object starts with the range: a HEAD (its 1-byte probe) and such a range are answered.
      const head = await fetch(`${url}/files/${big.uid}?created_at=${big.createdAt}`, { method: 'HEAD' })
      t.is(head.status, 200, `HEAD, checkBigfileRanges ${checkBigfileRanges}`)
      t.is(head.headers.get('content-length'), String(big.data.length))
      const first = await fetch(`${url}/files/${big.uid}?created_at=${big.createdAt}`, { headers: { Range: 'bytes=0-999' } })
      t.is(first.status, 206)
      t.true(Buffer.from(await first.arrayBuffer()).equals(big.data.subarray(0, 1000)))
      // Refused before the status line: the object's first bytes, sent as these, would be a 206
      // cut short, or (when the first chunk is the range's length) a complete 206 of wrong bytes.
      const r = await fetch(`${url}/files/${big.uid}?created_at=${big.createdAt}`, { headers: { Range: 'bytes=1000-17383' } }).catch(() => undefined)
      t.is(r?.status, 502, `checkBigfileRanges ${checkBigfileRanges}`)
      t.is((await r?.json())?.code, 'DES_STORAGE')
    } finally {
      await closeServer(srv)
    }
  }
})

/** An object in memory as a ByteSource, counting the bytes read from it. */
function bufferSource(key: string, object: Buffer): ByteSource & { fetched: number; etag: string } {
  const source = {
    backend: 's3',
    id: 'memory',
    fetched: 0,
    etag: '"1"',
    async getTail(k: string, n: number) {
      if (k !== key) throw new DesError('DES_NOT_FOUND', `no object ${k}`)
      const bytes = object.subarray(Math.max(0, object.length - n))
      source.fetched += bytes.length
      return { bytes: Buffer.from(bytes), objectSize: object.length, etag: source.etag }
    },
    async getRange(_k: string, offset: number, length: number) {
      source.fetched += length
      return Buffer.from(object.subarray(offset, offset + length))
    },
    // Only the shard is there (its sidecar, asked for with the tail, is not).
    stream: (k: string) => Promise.reject(new DesError('DES_NOT_FOUND', `no object ${k}`)),
    list: () => (async function* () {})(),
    rootKeys: () => Promise.resolve([]),
    ping: () => Promise.resolve(),
  }
  return source
}

test('an index before the tail is fetched in two steps past 1 MiB: a footer stating 64 MiB of index over zeros is refused from its first MiB, a real large index reads', async (t) => {
  // Header, zeros, and a footer whose index is all of them.
  const size = 64 << 20
  const crafted = Buffer.alloc(size)
  crafted.write('DES2', 0, 'latin1')
  crafted[4] = 2
  crafted.write('DESI', size - 12, 'latin1')
  crafted.writeBigUInt64LE(BigInt(size - 20), size - 8)
  const bad = bufferSource('20240301/0A.des', crafted)
  const err = await t.throwsAsync(openShard(bad, '20240301/0A.des', 64 << 10))
  t.is(errorCode(err), 'DES_CORRUPT')
  t.regex(err!.message, /not a checksum block/)
  t.true(bad.fetched < 2 << 20, `${bad.fetched} bytes fetched`)
  // Found damaged once, that version is refused again from its tail alone; another version is read anew.
  const damaged = new DamagedShards()
  await t.throwsAsync(openShard(bad, '20240301/0A.des', 64 << 10, undefined, damaged))
  bad.fetched = 0
  const again = await t.throwsAsync(openShard(bad, '20240301/0A.des', 64 << 10, undefined, damaged))
  t.is(errorCode(again), 'DES_CORRUPT')
  t.is(bad.fetched, 64 << 10, 'the tail only')
  bad.etag = '"2"'
  bad.fetched = 0
  await t.throwsAsync(openShard(bad, '20240301/0A.des', 64 << 10, undefined, damaged))
  t.true(bad.fetched > 64 << 10, 'a new version: its index fetched')
  // A shard whose index is past 1 MiB plus the tail, read the same way.
  const dir = tempDir()
  // Digit uids route by value: every one of these to shard 0 of 16.
  const files = Array.from({ length: 25_000 }, (_, i) => ({ uid: `9${'0'.repeat(30)}${String(i * 16).padStart(8, '0')}`, createdAt: DAY, data: Buffer.from(String(i)) }))
  await writeStore(dir, files, { nBits: 4 })
  const keys = (fs.readdirSync(dir, { recursive: true }) as string[]).map(String).filter((f) => f.endsWith('.des'))
  t.is(keys.length, 1)
  const key = keys[0]
  const bytes = fs.readFileSync(path.join(dir, key))
  const good = bufferSource(key, bytes)
  const shard = await openShard(good, key, 64 << 10)
  t.true(shard.reader.indexSize > (1 << 20) + (64 << 10), `index of ${shard.reader.indexSize} bytes`)
  const someUid = shard.reader.entries()[0].uid
  t.true(files.some((f) => f.uid === someUid))
})

test('multi-S3: two buckets as two zones, each shard read from its zone only', async (t) => {
  const env = s3TestEnv()
  const client = testS3Client()
  const [low, high] = [await freshBucket(client, 'des-zone-a'), await freshBucket(client, 'des-zone-b')]
  const dir = tempDir()
  const files: TestFile[] = []
  for (let i = 0; i < 40; i++) files.push({ uid: `${i}`, createdAt: DAY, data: payload(200 + i, i) })
  await writeStore(dir, files, { nBits: 4 })
  // Hex of n_bits 4 is one digit: 0-7 to the low zone, 8-F to the high one.
  await uploadDir(client, low, dir, '', (k) => /\/[0-7]\.des$/.test(k))
  await uploadDir(client, high, dir, 'z/', (k) => /\/[89A-F]\.des$/.test(k))
  const file = path.join(dir, 'zones.yaml')
  fs.writeFileSync(
    file,
    [
      'n_bits: 4',
      'zones:',
      `  - {name: low, range: {start: 0, end: 7}, s3: {bucket: ${low}, region_name: us-east-1, endpoint_url: "${env.endpoint}"}}`,
      `  - {name: high, range: {start: 8, end: 15}, s3: {bucket: ${high}, region_name: us-east-1, endpoint_url: "${env.endpoint}", prefix: z}}`,
    ].join('\n'),
  )
  const zones = loadZones(file)
  const sources: ZonedSources = zonedS3Sources(zones)
  t.is(sources.all().length, 2)
  const store = new Store({ sources, nBits: zones.nBits })
  for (const f of files) t.true((await store.get(f.uid, DAY)).equals(f.data), f.uid)
  t.is(store.backend, 'multi_s3')
  t.is(sources.sourceFor(locateShard('3', DAY, 4).shardIndex).id, `s3:${low}/`)
  t.is(sources.sourceFor(locateShard('12', DAY, 4).shardIndex).id, `s3:${high}/z/`)
  await store.ping()
})

test('multi-S3 with a gap in the zones: a warning at start-up, files of covered indexes served, an uncovered index not found', async (t) => {
  const env = s3TestEnv()
  const client = testS3Client()
  const low = await freshBucket(client, 'des-zone-gap')
  const dir = tempDir()
  const files: TestFile[] = []
  for (let i = 0; i < 16; i++) files.push({ uid: `${i}`, createdAt: DAY, data: payload(100 + i, i) })
  await writeStore(dir, files, { nBits: 4 })
  await uploadDir(client, low, dir, '', (k) => /\/[0-7]\.des$/.test(k))
  const file = path.join(dir, 'zones.yaml')
  fs.writeFileSync(file, ['n_bits: 4', 'zones:', `  - {name: low, range: {start: 0, end: 7}, s3: {bucket: ${low}, region_name: us-east-1, endpoint_url: "${env.endpoint}"}}`].join('\n'))
  const warned = new Promise<Error>((resolve) => {
    const on = (w: Error & { code?: string }) => {
      if (w.code !== 'DES_ZONES_UNCOVERED') return
      process.off('warning', on)
      resolve(w)
    }
    process.on('warning', on)
  })
  const store = createStore(loadConfig({ DES_BACKEND: 'multi_s3', DES_ZONES_CONFIG: file }))
  t.regex((await warned).message, /shard indexes 8\.\.15 are in no zone/)
  for (const f of files.slice(0, 8)) t.true((await store.get(f.uid, DAY)).equals(f.data), f.uid)
  const err = await t.throwsAsync(store.find('12', DAY))
  t.is(errorCode(err), 'DES_NOT_FOUND')
  t.regex(err!.message, /shard index 12 is in no zone of the zones file \(uncovered: 8\.\.15\)/)
})
