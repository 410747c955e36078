// The S3 key prefix as the original composes it: the configured prefix
// verbatim ('' or with a trailing '/' added), a leading '/' kept. On AWS
// `/archive/x` and `archive/x` are two objects, so these tests answer as AWS
// does (an in-process server that takes keys exactly as sent); MinIO, which
// cleans the slash away, is in pack-s3.spec.ts.

import test from 'ava'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { normalisePrefix } from '../src/config/checks'
import { loadConfig } from '../src/config/env'
import { parseMigrateConfig } from '../src/config/migrate'
import { s3TargetSettings } from '../src/config/pack'
import { parseZones } from '../src/config/zones'
import { ofTheStore } from '../src/migrate/store-guard'
import { listUnder, S3Source } from '../src/storage/s3'
import { s3ObjectKey } from '../src/storage/s3-key'
import { singleSource } from '../src/storage/source'
import { Store } from '../src/store/store'
import { payload, tempDir, writeStore } from './helpers/store'
import { clientOf } from './helpers/fake-s3'
import { createS3Client } from '../src/storage/s3-client'

const DAY = '2024-01-01T00:00:00Z'

test('a configured prefix keeps its leading slash and gains a trailing one, as the original normalises it', (t) => {
  t.is(normalisePrefix(undefined), '')
  t.is(normalisePrefix(''), '')
  t.is(normalisePrefix('archive'), 'archive/')
  t.is(normalisePrefix('archive/'), 'archive/')
  t.is(normalisePrefix('/archive'), '/archive/')
  t.is(normalisePrefix('/archive/'), '/archive/')
  t.is(normalisePrefix('/'), '/')
  // Every place a prefix is configured: DES_S3_PREFIX, --s3-prefix, a zone's s3.prefix, packer.s3.prefix.
  t.is(loadConfig({ DES_BACKEND: 's3', DES_S3_BUCKET: 'b', DES_S3_PREFIX: '/archive' }).s3?.prefix, '/archive/')
  t.is(s3TargetSettings('b', '/packed', { DES_S3_BUCKET: 'b' }).prefix, '/packed/')
  const zones = parseZones(JSON.stringify({ n_bits: 4, zones: [{ name: 'all', range: { start: 0, end: 15 }, s3: { bucket: 'b', prefix: '/zone' } }] }), 'zones.json')
  t.is(zones.zones[0].s3.prefix, '/zone/')
  const migrate = parseMigrateConfig({ database: { url: 'postgres://u:p@h/db' }, migration: {}, packer: { s3: { bucket: 'b', prefix: '/m' } } })
  t.is(migrate.packer.output.kind === 's3' && migrate.packer.output.prefix, '/m/')
})

test('an object key is the prefix verbatim, then the key in the store', (t) => {
  t.is(s3ObjectKey('/archive/', '20240101/0A.des'), '/archive/20240101/0A.des')
  t.is(s3ObjectKey('', '20240101_0A_0000.des'), '20240101_0A_0000.des')
  t.is(s3ObjectKey('/archive/', '_bigFiles/ab'), '/archive/_bigFiles/ab')
})

/**
 * An S3 server that takes keys exactly as sent (as AWS does): GET (with
 * Range), HEAD and ListObjectsV2 over `objects`; every key asked for is in `asked`.
 */
async function awsLikeServer(t: { teardown(fn: () => unknown): void }, objects: Map<string, Buffer>) {
  const asked: string[] = []
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x')
    // Path style: /<bucket>/<key>; the key keeps every slash it was sent with.
    const key = url.pathname.slice('/bkt/'.length).split('/').map(decodeURIComponent).join('/')
    if (key === '' && url.searchParams.get('list-type') === '2') {
      const prefix = url.searchParams.get('prefix') ?? ''
      asked.push(`LIST ${prefix}`)
      const delimiter = url.searchParams.get('delimiter')
      const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && !(delimiter && k.slice(prefix.length).includes(delimiter))).sort()
      const contents = keys.map((k) => `<Contents><Key>${k}</Key><Size>${objects.get(k)!.length}</Size></Contents>`).join('')
      res.writeHead(200, { 'Content-Type': 'application/xml' })
      return res.end(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bkt</Name><Prefix>${prefix}</Prefix><KeyCount>${keys.length}</KeyCount><IsTruncated>false</IsTruncated>${contents}</ListBucketResult>`)
    }
    asked.push(`${req.method} ${key}`)
    const data = objects.get(key)
    if (!data) {
      res.writeHead(404, { 'Content-Type': 'application/xml' })
      return res.end(req.method === 'HEAD' ? undefined : '<Error><Code>NoSuchKey</Code></Error>')
    }
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '')
    if (m) {
      const start = m[1] === '' ? Math.max(0, data.length - Number(m[2])) : Number(m[1])
      const end = m[1] === '' || m[2] === '' ? data.length - 1 : Math.min(Number(m[2]), data.length - 1)
      res.writeHead(206, { 'Content-Length': String(end - start + 1), 'Content-Range': `bytes ${start}-${end}/${data.length}`, ETag: '"v1"' })
      return res.end(data.subarray(start, end + 1))
    }
    res.writeHead(200, { 'Content-Length': String(data.length), ETag: '"v1"' })
    res.end(req.method === 'HEAD' ? undefined : data)
  })
  const client = await clientOf(t, server)
  return { client, asked }
}

/** A nested store's files (one inline entry, one BigFile) by key in the store. */
async function smallStore(): Promise<{ objects: Map<string, Buffer>; small: Buffer; big: Buffer }> {
  const dir = tempDir('des-prefix')
  const small = payload(3000)
  const big = payload(5000, 1)
  await writeStore(dir, [{ uid: 'a', createdAt: DAY, data: small }, { uid: 'big', createdAt: DAY, data: big }], { writer: { bigFileThreshold: 4000 } })
  const objects = new Map<string, Buffer>()
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else objects.set(path.relative(dir, p).split(path.sep).join('/'), fs.readFileSync(p))
    }
  }
  walk(dir)
  return { objects, small, big }
}

test('a store the original wrote under DES_S3_PREFIX=/archive is read at its keys, /archive/<date>/<HEX>.des and its BigFiles, not at archive/…', async (t) => {
  const { objects, small, big } = await smallStore()
  const onServer = new Map([...objects].map(([k, v]) => [`/archive/${k}`, v]))
  const { client, asked } = await awsLikeServer(t, onServer)
  const config = loadConfig({ DES_BACKEND: 's3', DES_S3_BUCKET: 'bkt', DES_S3_PREFIX: '/archive' })
  const store = new Store({ sources: singleSource(new S3Source(client, config.s3!)), nBits: 8 })
  t.true((await store.get('a', DAY)).equals(small))
  t.true((await store.get('big', DAY)).equals(big))
  t.true(asked.length > 0)
  t.true(asked.every((a) => a.startsWith('GET /archive/20240101/')), asked.join(', '))
  t.true(asked.some((a) => a.startsWith('GET /archive/20240101/_bigFiles/')))
})

test('a listing under /archive/ is of the keys that start with it; on a server that keeps slashes, archive/ is never taken for it', async (t) => {
  const { objects } = await smallStore()
  const both = new Map<string, Buffer>()
  for (const [k, v] of objects) both.set(`/archive/${k}`, v)
  both.set('archive/20240101/FF.des', Buffer.from('another store'))
  const { client } = await awsLikeServer(t, both)
  const listed = async (prefix: string, delimiter?: string) => {
    const keys: string[] = []
    for await (const o of listUnder(client, 'bkt', prefix, delimiter)) keys.push(o.Key)
    return keys
  }
  t.deepEqual(await listed('/archive/'), [...objects.keys()].map((k) => `/archive/${k}`).sort())
  t.deepEqual(await listed('/archive/20240101/', '/'), ['/archive/20240101/43.des', '/archive/20240101/49.des'])
  const source = new S3Source(client, { bucket: 'bkt', prefix: '/archive/' })
  const fromSource: string[] = []
  for await (const o of source.list()) fromSource.push(o.key)
  t.deepEqual(fromSource, [...objects.keys()].sort())

  // Only archive/ holds objects: /archive/ is empty here (the HEAD of /archive/<key> finds nothing).
  const { client: other, asked } = await awsLikeServer(t, new Map([['archive/20240101/FF.des', Buffer.from('another store')]]))
  const none: string[] = []
  for await (const o of listUnder(other, 'bkt', '/archive/')) none.push(o.Key)
  t.deepEqual(none, [])
  t.deepEqual(asked, ['LIST /archive/', 'LIST archive/', 'HEAD /archive/20240101/FF.des'])
})

test('a migration row naming a shard of a store under /archive/ is the store\'s, however a server would reach it', (t) => {
  const source = new S3Source(createS3Client({ region: 'us-east-1', endpoint: 'http://127.0.0.1:1', forcePathStyle: true }), { bucket: 'b', prefix: '/archive/' })
  const packer = { layout: 'nested', nBits: 8, bigfilesPrefix: '_bigFiles' } as Parameters<typeof ofTheStore>[2]
  t.true(ofTheStore({ kind: 's3', bucket: 'b', key: '/archive/20240101/0A.des' } as Parameters<typeof ofTheStore>[0], source, packer))
  // MinIO stores /archive/x as archive/x: that object is the store's too.
  t.true(ofTheStore({ kind: 's3', bucket: 'b', key: 'archive/20240101/0A.des' } as Parameters<typeof ofTheStore>[0], source, packer))
  t.false(ofTheStore({ kind: 's3', bucket: 'b', key: '/other/20240101/0A.des' } as Parameters<typeof ofTheStore>[0], source, packer))
})
