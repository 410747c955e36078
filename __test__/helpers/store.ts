// Test stores made with the addon's ShardWriter (not `des pack`), on disk and
// copied to a MinIO bucket; and servers run in-process on port 0.

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { AddressInfo } from 'node:net'
import type * as http from 'node:http'
import { locateShard, ShardWriter, type ShardWriterOptions } from '../../src/native'
import { shardKey } from '../../src/store/layout'

export interface TestFile {
  uid: string
  createdAt: string
  data: Buffer
  meta?: Record<string, unknown>
}

/** A fresh temp directory (removed by the OS; tests may rm it). */
export function tempDir(label = 'des-serve'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${label}-`))
}

/** Deterministic-looking but varied bytes: compressible text with a random tail. */
export function payload(size: number, seed = 0): Buffer {
  const text = Buffer.from(`file ${seed} `.repeat(Math.ceil(size / 8) + 1)).subarray(0, Math.floor(size / 2))
  return Buffer.concat([text, randomBytes(size - text.length)])
}

/**
 * Writes `files` into a nested store under `dir` (`<date>/<HEX>.des`, or
 * `<HEX>.<part>.des` with `part`), one ShardWriter per key. Returns the keys written.
 */
export async function writeStore(dir: string, files: TestFile[], opts: { nBits?: number; part?: number; writer?: ShardWriterOptions; append?: boolean } = {}): Promise<string[]> {
  const byKey = new Map<string, TestFile[]>()
  for (const f of files) {
    const loc = locateShard(f.uid, f.createdAt, opts.nBits ?? 8)
    const key = shardKey(loc, opts.part ?? 0)
    byKey.set(key, [...(byKey.get(key) ?? []), f])
  }
  for (const [key, list] of byKey) {
    const file = path.join(dir, key)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    const w = opts.append ? await ShardWriter.append(file, opts.writer) : ShardWriter.create(file, opts.writer)
    for (const f of list) await w.add(f.uid, f.data, f.meta)
    await w.finish()
  }
  return [...byKey.keys()]
}

/** Every file under `dir`, as keys relative to it. */
export function listKeys(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) out.push(path.relative(dir, p).split(path.sep).join('/'))
    }
  }
  walk(dir)
  return out
}

/** Uploads every file under `dir` to `bucket` (keys relative to `dir`, after `prefix`). */
export async function uploadDir(client: S3Client, bucket: string, dir: string, prefix = '', only?: (key: string) => boolean): Promise<void> {
  for (const key of listKeys(dir)) {
    if (only && !only(key)) continue
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + key, Body: fs.readFileSync(path.join(dir, key)) }))
  }
}

/** Listens on 127.0.0.1:0; resolves to the base URL. */
export async function listenLocal(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Closes a server and its keep-alive connections. */
export async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
