// Corpora for packer tests and readers that check what a store really holds.

import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import { locateShard, ShardReader } from '../../src/native'

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

const made: string[] = []
process.on('exit', () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh temp dir, removed at process exit. */
export function tempDir(label = 'des-pack-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), label))
  made.push(dir)
  return dir
}

export type Kind = 'text' | 'json' | 'random' | 'zeros'

/** Bytes of a kind: compressible text/JSON, incompressible random, zeros. */
export function content(kind: Kind, size: number, seed = 0): Buffer {
  if (kind === 'random') return randomBytes(size)
  if (kind === 'zeros') return Buffer.alloc(size)
  const unit = kind === 'json' ? `{"id":${seed},"name":"item-${seed}","tags":["a","b"],"v":${seed * 7}}\n` : `line ${seed} of a log file: all good here\n`
  return Buffer.from(unit.repeat(Math.ceil(size / unit.length)).slice(0, size))
}

export interface ManifestRow {
  uid: string
  created_at: string
  size_bytes: number
  source_path: string
  meta?: Record<string, unknown>
}

export interface Corpus {
  rows: ManifestRow[]
  /** sha256 of each uid's bytes. */
  shas: Map<string, string>
  /** The manifest written as JSON (for the CLI). */
  manifestPath: string
}

/** Writes one file per spec into `dir` and a manifest beside them. */
export function makeCorpus(dir: string, specs: Array<{ uid: string; createdAt?: string; kind?: Kind; size: number; meta?: Record<string, unknown> }>): Corpus {
  fs.mkdirSync(dir, { recursive: true })
  const rows: ManifestRow[] = []
  const shas = new Map<string, string>()
  specs.forEach((s, i) => {
    const data = content(s.kind ?? 'text', s.size, i)
    const file = path.join(dir, `src-${i}-${s.uid.replace(/[^A-Za-z0-9._-]/g, '_')}`)
    fs.writeFileSync(file, data)
    rows.push({ uid: s.uid, created_at: s.createdAt ?? '2024-03-01T12:00:00Z', size_bytes: data.length, source_path: file, ...(s.meta ? { meta: s.meta } : {}) })
    shas.set(s.uid, sha256(data))
  })
  const manifestPath = path.join(dir, `manifest-${randomBytes(3).toString('hex')}.json`)
  fs.writeFileSync(manifestPath, JSON.stringify(rows, null, 1))
  return { rows, shas, manifestPath }
}

/** The API form of manifest rows. */
export function asInputs(rows: ManifestRow[]) {
  return rows.map((r) => ({ uid: r.uid, createdAt: r.created_at, sizeBytes: r.size_bytes, source: r.source_path, ...(r.meta ? { meta: r.meta } : {}) }))
}

export interface StoredFile {
  key: string
  sha256: string
  size: number
  codec: string | null
  isBigfile: boolean
  meta: Record<string, unknown>
}

/** Every `.des` file under dir, relative, sorted. */
export function shardFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.des')) out.push(path.relative(dir, p))
    }
  }
  walk(dir)
  return out.sort()
}

/**
 * Reads every entry of every shard of a local store (bytes decoded, BigFiles
 * included). Throws if a uid is in two shards.
 */
export async function readLocalStore(dir: string): Promise<Map<string, StoredFile>> {
  const out = new Map<string, StoredFile>()
  for (const key of shardFiles(dir)) {
    const reader = await ShardReader.open(path.join(dir, key))
    for (const e of reader.entries()) {
      if (out.has(e.uid)) throw new Error(`uid ${e.uid} is in ${out.get(e.uid)!.key} and ${key}`)
      const data = await reader.read(e.uid)
      out.set(e.uid, { key, sha256: sha256(data), size: data.length, codec: e.codec ?? null, isBigfile: e.isBigfile, meta: JSON.parse(e.meta) })
    }
  }
  return out
}

async function getObject(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  return Buffer.from(await res.Body!.transformToByteArray())
}

/** Every object key under a prefix. */
export async function listKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = []
  let token: string | undefined
  do {
    const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
    for (const o of res.Contents ?? []) keys.push(o.Key!)
    token = res.IsTruncated ? res.NextContinuationToken : undefined
  } while (token)
  return keys.sort()
}

/** Reads every entry of every shard object under a prefix, BigFiles from their objects. */
export async function readS3Store(client: S3Client, bucket: string, prefix = ''): Promise<Map<string, StoredFile>> {
  const out = new Map<string, StoredFile>()
  const dir = tempDir('des-s3-read-')
  for (const key of (await listKeys(client, bucket, prefix)).filter((k) => k.endsWith('.des'))) {
    const file = path.join(dir, key.replace(/\//g, '_'))
    fs.writeFileSync(file, await getObject(client, bucket, key))
    const reader = await ShardReader.open(file)
    for (const e of reader.entries()) {
      if (out.has(e.uid)) throw new Error(`uid ${e.uid} is in ${out.get(e.uid)!.key} and ${key}`)
      let data: Buffer
      if (e.isBigfile) {
        data = await getObject(client, bucket, `${key.slice(0, key.lastIndexOf('/'))}/_bigFiles/${e.sha256}`)
        reader.verifyBigfile(e.uid, data)
      } else data = await reader.read(e.uid)
      out.set(e.uid, { key: key.slice(prefix.length), sha256: sha256(data), size: data.length, codec: e.codec ?? null, isBigfile: e.isBigfile, meta: JSON.parse(e.meta) })
    }
    fs.rmSync(file)
  }
  return out
}

/**
 * Why this machine cannot show which bytes of a file are in the page cache, or
 * direct writes would not skip it (tmpfs keeps every page in memory), for the
 * folder `dir`; null when it can (Linux, fincore, ext2/3/4 or XFS).
 */
export function noCacheView(dir: string): string | null {
  if (process.platform !== 'linux') return 'not Linux'
  try {
    execFileSync('fincore', ['--version'], { stdio: 'ignore' })
  } catch {
    return 'no fincore'
  }
  const fsType = execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim()
  return ['ext2/ext3', 'xfs'].includes(fsType) ? null : `a ${fsType} filesystem`
}

/** Bytes of each file in the page cache (fincore), in order. */
export function cachedBytes(files: string[]): number[] {
  return execFileSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', ...files], { encoding: 'utf8' }).trim().split('\n').map(Number)
}

/** `keys` lists of `perKey` uids, each list routed to a shard index of its own on `createdAt`'s day (nBits 8). */
export function uidsByKey(keys: number, perKey: number, createdAt: string, name = 'k'): string[][] {
  const byIndex = new Map<number, string[]>()
  const full: string[][] = []
  for (let i = 0; full.length < keys; i++) {
    const uid = `${name}${i}`
    const index = locateShard(uid, createdAt, 8).shardIndex
    const list = byIndex.get(index) ?? []
    byIndex.set(index, list)
    if (list.length === perKey) continue
    list.push(uid)
    if (list.length === perKey) full.push(list)
  }
  return full
}

/** `client`, recording the name and outcome of every command it sends. */
export function recordCommands(client: S3Client): { client: S3Client; calls: Array<{ name: string; status?: number; range?: string; key?: string }> } {
  const calls: Array<{ name: string; status?: number; range?: string; key?: string }> = []
  client.middlewareStack.add(
    (next, context) => async (args) => {
      try {
        const { Range: range, Key: key } = args.input as { Range?: string; Key?: string }
        const out = await next(args)
        calls.push({ name: context.commandName as string, range, key })
        return out
      } catch (err) {
        const { Range: range, Key: key } = args.input as { Range?: string; Key?: string }
        calls.push({ name: context.commandName as string, range, key, status: (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode })
        throw err
      }
    },
    { step: 'initialize', name: 'recordCalls' },
  )
  return { client, calls }
}

/** Commands of one name sent that ended with `status` (undefined: succeeded). */
export function countCalls(calls: Array<{ name: string; status?: number }>, name: string, status?: number): number {
  return calls.filter((c) => c.name === name && c.status === status).length
}
