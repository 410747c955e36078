// Running cycles: the dependencies built once from the config, one cycle or
// one every interval until stopped, the SPEC §8 metrics, and their endpoint.

import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Knex } from 'knex'
import type { S3Client } from '@aws-sdk/client-s3'
import {
  migrationBatchSize,
  migrationBytesTotal,
  migrationCyclesTotal,
  migrationDurationSeconds,
  migrationFilesMigratedTotal,
  migrationFilesTotal,
  migrationPendingFiles,
  migrationRowsSelected,
  writeMetrics,
  zeroMigrationSeries,
} from '../metrics'
import { createS3Client } from '../storage/s3-client'
import { LocalSource } from '../storage/local'
import { S3Source } from '../storage/s3'
import type { ByteSource, ShardSources } from '../storage/source'
import { ZonedSources } from '../storage/zones'
import { zonesPackTarget, type PackTarget } from '../pack'
import type { ZonesConfig } from '../config/zones'
import { DesError } from '../errors'
import type { FaultPoint, MigrateConfig } from '../config/migrate'
import { createKnex, SourceTable } from './db'
import { runCycle, type CycleDeps, type CycleReport } from './cycle'
import { listenError } from '../serve/listen-error'

/**
 * Builds what cycles need; `close()` releases the database pool and clients.
 * With `zones` (DES_BACKEND=multi_s3) shards are written to, and read back
 * from, the zone of their shard index instead of `packer.output`.
 */
export function createDeps(
  config: MigrateConfig,
  opts: { fault?: FaultPoint; log?: (line: string) => void; zones?: ZonesConfig } = {},
): CycleDeps & { knex: Knex; close(): Promise<void> } {
  const knex = createKnex(config.database.url)
  const table = new SourceTable(knex, config.database)
  const out = config.packer.output
  let target: PackTarget
  let store: ByteSource | ShardSources
  let lockNamespace: string
  const clients: S3Client[] = []
  if (opts.zones) {
    if (opts.zones.nBits !== config.packer.nBits) {
      throw new DesError('DES_CONFIG', `the zones file routes with n_bits ${opts.zones.nBits}, packer.n_bits is ${config.packer.nBits}: set them alike`)
    }
    const zoned = zonesPackTarget(opts.zones, (s3) => {
      const client = createS3Client(s3)
      clients.push(client)
      return client
    })
    const clientOf = new Map(zoned.zones.map((z) => [z.name, z.client]))
    const sources = new ZonedSources(opts.zones, (z) => new S3Source(clientOf.get(z.name)!, z.s3, 'multi_s3'))
    target = zoned
    store = sources
    lockNamespace = `multi_s3:${sources
      .all()
      .map((s) => s.id)
      .join(',')}`
  } else if (out.kind === 'local') {
    target = { kind: 'local', dir: out.dir }
    store = new LocalSource(out.dir, { madeByWriting: true })
    lockNamespace = store.id
  } else {
    const client = createS3Client({ region: out.region, endpoint: out.endpoint, forcePathStyle: out.forcePathStyle })
    clients.push(client)
    target = { kind: 's3', bucket: out.bucket, prefix: out.prefix, client }
    store = new S3Source(client, { bucket: out.bucket, prefix: out.prefix }, 's3')
    lockNamespace = store.id
  }
  let sourceS3: S3Client | undefined
  const src = config.packer.s3Source
  if (src.enabled) {
    sourceS3 = createS3Client({ region: src.region, endpoint: src.endpoint, forcePathStyle: Boolean(src.endpoint) }, { maxAttempts: src.maxRetries + 1, retryDelayMs: src.retryDelaySeconds * 1000 })
    clients.push(sourceS3)
  }
  return {
    config,
    knex,
    table,
    target,
    store,
    lockNamespace,
    sourceS3,
    fault: opts.fault,
    log: opts.log,
    async close() {
      for (const c of clients) c.destroy()
      await knex.destroy()
    },
  }
}

/**
 * Counts a finished cycle in the SPEC §8 metrics, as the reference counts
 * them: cycles by status (a failed cycle is `failure`), each cycle's duration,
 * the rows it processed (bad ones included) in des_migration_files_total and
 * the bytes of those migrated, the backlog as the cycle began; `batchSize` is
 * the configured one. A dry run (ours) counts only as a `dry_run` cycle and
 * in the backlog and rows-selected gauges: it migrates nothing.
 */
export function recordCycle(report: CycleReport, batchSize?: number): void {
  migrationCyclesTotal.labels(report.dryRun ? 'dry_run' : report.status === 'error' ? 'failure' : 'success').inc()
  if (batchSize !== undefined) migrationBatchSize.set(batchSize)
  migrationRowsSelected.set(report.selected)
  if (report.pendingBefore !== undefined) migrationPendingFiles.set(report.pendingBefore)
  if (!report.dryRun) {
    migrationDurationSeconds.observe(report.timings.total)
    migrationFilesTotal.inc(report.processed)
    migrationFilesMigratedTotal.inc(report.migrated)
    migrationBytesTotal.inc(report.bytes)
  }
}

/** What sets the metrics server's address, for a listen error's message. */
const METRICS_LISTEN = { host: 'the metrics host', port: '--metrics-port' }

/** Serves `/metrics` (and `/health`) on `port`; resolves once listening. */
export async function serveMetrics(port: number, host = '0.0.0.0'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0]
    if (req.method === 'GET' && url === '/metrics') {
      writeMetrics(res).catch((err) => {
        res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(String(err))
      })
    } else if (req.method === 'GET' && url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok\n')
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    // Only while listening: a later error is not a listen error, nor swallowed here.
    const failed = (err: Error) => reject(listenError(err, host, port, METRICS_LISTEN))
    server.once('error', failed)
    server.listen(port, host, () => {
      server.off('error', failed)
      resolve()
    })
  })
  return server
}

export function boundPort(server: http.Server): number {
  return (server.address() as AddressInfo).port
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done)
  })
}

export interface LoopOptions {
  dryRun?: boolean
  /** Run a cycle every `intervalSeconds` until `signal` aborts. */
  continuous?: boolean
  intervalSeconds?: number
  /** Aborting stops the loop after the cycle in flight. */
  signal?: AbortSignal
  onReport?: (report: CycleReport) => void | Promise<void>
}

/** One cycle, or (continuous) cycles until stopped; resolves to the last report. */
export async function runCycles(deps: CycleDeps, opts: LoopOptions = {}): Promise<CycleReport | undefined> {
  const signal = opts.signal ?? new AbortController().signal
  zeroMigrationSeries({ s3Sources: deps.sourceS3 !== undefined })
  // Set once at start, as the reference sets it: the configured size, not what a cycle found.
  migrationBatchSize.set(deps.config.migration.batchSize)
  let last: CycleReport | undefined
  do {
    if (signal.aborted) break
    last = await runCycle(deps, { dryRun: opts.dryRun })
    recordCycle(last, deps.config.migration.batchSize)
    await opts.onReport?.(last)
    if (!opts.continuous) break
    await pause((opts.intervalSeconds ?? 3600) * 1000, signal)
  } while (!signal.aborted)
  return last
}
