// One behaviour suite over every backend: DES_TEST_BACKEND=local|s3 picks
// one, unset runs both. The S3 backend is the real MinIO of scripts/services,
// with a client that records every HTTP request it sends.

import type { S3Client } from '@aws-sdk/client-s3'
import { LocalSource } from '../../src/storage/local'
import { S3Source } from '../../src/storage/s3'
import { singleSource, type ShardSources } from '../../src/storage/source'
import { Store, type StoreOptions } from '../../src/store/store'
import { freshBucket, testS3Client } from './services'
import { uploadDir } from './store'

export type BackendKind = 'local' | 's3'

export const BACKENDS: BackendKind[] = (() => {
  const only = process.env.DES_TEST_BACKEND?.trim()
  if (only === 'local' || only === 's3') return [only]
  if (only) throw new Error(`DES_TEST_BACKEND=${only}: expected local or s3`)
  return ['local', 's3']
})()

/** One HTTP request an S3 client sent. */
export interface SentRequest {
  method: string
  key: string
  range?: string
  query: Record<string, unknown>
}

/** A client for the test MinIO that records every request it sends (each retry too). */
export function recordingClient(client: S3Client = testS3Client()): { client: S3Client; sent: SentRequest[] } {
  const sent: SentRequest[] = []
  client.middlewareStack.add(
    (next) => async (args) => {
      const req = args.request as { method: string; path: string; headers: Record<string, string>; query: Record<string, unknown> }
      sent.push({ method: req.method, key: decodeURIComponent(req.path), range: req.headers.range ?? req.headers.Range, query: req.query ?? {} })
      return next(args)
    },
    // deserialize is the innermost step: it sees every attempt, just before the wire.
    { step: 'deserialize', name: 'recordRequests' },
  )
  return { client, sent }
}

export interface Backend {
  kind: BackendKind
  /** The local directory the store is written to (the bucket's content for s3). */
  dir: string
  sources: ShardSources
  /** Requests sent to S3 (always empty for local). */
  sent: SentRequest[]
  /** Makes the backend hold what `dir` holds now (uploads for s3). */
  sync(only?: (key: string) => boolean): Promise<void>
  bucket?: string
  client?: S3Client
  store(opts?: Partial<StoreOptions>): Store
}

/** A backend over `dir` (uploaded to a fresh bucket for s3). */
export async function openBackend(kind: BackendKind, dir: string, opts: { prefix?: string } = {}): Promise<Backend> {
  if (kind === 'local') {
    const sources = singleSource(new LocalSource(dir))
    return { kind, dir, sources, sent: [], sync: async () => {}, store: (o = {}) => new Store({ sources, nBits: 8, ...o }) }
  }
  const { client, sent } = recordingClient()
  const bucket = await freshBucket(client, 'des-serve')
  sent.length = 0
  const prefix = opts.prefix ?? ''
  const sources = singleSource(new S3Source(client, { bucket, prefix }, 's3'))
  const b: Backend = {
    kind,
    dir,
    sources,
    sent,
    bucket,
    client,
    sync: async (only) => {
      const before = sent.length
      await uploadDir(client, bucket, dir, prefix, only)
      sent.splice(before) // uploads are not reads
    },
    store: (o = {}) => new Store({ sources, nBits: 8, ...o }),
  }
  await b.sync()
  return b
}

/** The requests of `sent` for shards and BigFiles: not those for the original's deletion sidecars (`.meta`), made with a shard's tail. */
export function shardGets(sent: SentRequest[]): SentRequest[] {
  return sent.filter((r) => !r.key.endsWith('.meta'))
}

/** The requests of `sent` for the original's deletion sidecars beside the shards. */
export function sidecarGets(sent: SentRequest[]): SentRequest[] {
  return sent.filter((r) => r.key.endsWith('.meta'))
}

/** The GETs among `sent` (anything else — HEAD, LIST — would break the contract). */
export function describeSent(sent: SentRequest[]): string[] {
  return sent.map((r) => `${r.method} ${r.key}${r.range ? ` ${r.range}` : ''}${Object.keys(r.query).length ? ` ?${Object.keys(r.query).join('&')}` : ''}`)
}
