// The Prometheus metrics of SPEC §8 (names and labels are part of the
// contract), registered once in one registry. Names and label values are the
// reference's, so its dashboards and alerts keep working: retrievals `ok` /
// `error`, source reads `success` / `error`, cycles `success` / `failure`,
// `backend` `s3` for zones too (backendLabel), histograms with the reference's
// buckets and `le` text ("1.0", not "1": withReferenceLe; any histogram of ours
// goes through it too).
// What we add (labels, metrics, label values) comes on top.

import type { ServerResponse } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { loadBuildInfo } from './config/build'

/** The process-wide registry that /metrics serves. */
export const registry = new Registry()

/** What `/metrics` is served from: this process's registry, or every worker's (serve/cluster-metrics.ts). */
export interface MetricsSource {
  readonly contentType: string
  metrics(): Promise<string>
}

/** The one `/metrics` answer, for `des serve` and `des migrate --metrics-port` alike; rejects if the text cannot be made. */
export async function writeMetrics(res: ServerResponse, source: MetricsSource = registry): Promise<void> {
  const text = await source.metrics()
  res.setHeader('Content-Type', source.contentType)
  res.end(text)
}
collectDefaultMetrics({ register: registry })

/**
 * The buckets of the reference's histograms that set none: its client
 * library's defaults. Bounds are part of the contract (a query of one `le`
 * series, a quantile computed from them), so ours are the same.
 */
const REFERENCE_DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

/** The buckets of the reference's des_migration_duration_seconds. */
const MIGRATION_DURATION_BUCKETS = [1, 5, 10, 30, 60, 120, 300]

/**
 * A bucket bound as the reference's client library writes it in `le`: a
 * float's text, so a whole number keeps its ".0" ("1.0", "300.0"; prom-client
 * would write "1", "300"). The `le` text is the label value a query matches,
 * so it must be the same. (That library writes bounds of 1e6 and up with an
 * exponent; none of ours is that large.)
 */
export function leText(bound: number): string {
  if (bound === Infinity) return '+Inf'
  return Number.isInteger(bound) ? `${bound}.0` : String(bound)
}

/** What prom-client's Histogram builds every exposition from (not in its typings). */
interface HistogramExport {
  getForPromString(): Promise<{ values: Array<{ labels: Record<string, string | number> }> }>
}

/**
 * `histogram`, writing its `le` labels with leText. prom-client makes both
 * this process's text (Registry.metrics) and what a worker hands the
 * primary under --workers N (get(), the same values with the labels merged)
 * from getForPromString(), so one change there covers both.
 */
function withReferenceLe<T extends string>(histogram: Histogram<T>): Histogram<T> {
  const target = histogram as unknown as HistogramExport
  if (typeof target.getForPromString !== 'function') throw new Error('prom-client: Histogram has no getForPromString() to write le labels through')
  const values = target.getForPromString.bind(histogram)
  target.getForPromString = async () => {
    const data = await values()
    for (const v of data.values) if (typeof v.labels.le === 'number') v.labels.le = leText(v.labels.le)
    return data
  }
  return histogram
}

/**
 * The `backend` label of the retrieval and S3 metrics for a store's backend,
 * as the reference sets it: its multi-S3 retriever reads through one S3
 * retriever per zone, and each of those counts as `s3`, so zones count as
 * `s3` here too (dashboards filtering on backend="s3" keep seeing them).
 */
export function backendLabel(backend: string): string {
  return backend === 'multi_s3' ? 's3' : backend
}

export const retrievalsTotal = new Counter({
  name: 'des_retrievals_total',
  help: 'File retrievals by backend and outcome status (ok/error, as the reference counts them) and HTTP status code (ours)',
  labelNames: ['backend', 'status', 'code'] as const,
  registers: [registry],
})

/** The `status` of des_retrievals_total for an HTTP status: `ok` when the file (or a redirect to it) was answered, else `error`. */
export function retrievalStatus(httpStatus: number): 'ok' | 'error' {
  return httpStatus < 400 ? 'ok' : 'error'
}

export const retrievalSeconds = withReferenceLe(
  new Histogram({
    name: 'des_retrieval_seconds',
    help: 'Time to retrieve a file',
    labelNames: ['backend'] as const,
    buckets: REFERENCE_DEFAULT_BUCKETS,
    registers: [registry],
  }),
)

export const corruptReadsTotal = new Counter({
  name: 'des_corrupt_reads_total',
  help: 'Reads answered DES_CORRUPT (a 502, or a BigFile stream cut short by its sha256 check), by backend',
  labelNames: ['backend'] as const,
  registers: [registry],
})

export const s3RangeCallsTotal = new Counter({
  name: 'des_s3_range_calls_total',
  help: 'S3 GET requests made to read shards, by type (header/footer/index/tail/payload/bigfile)',
  labelNames: ['backend', 'type'] as const,
  registers: [registry],
})

export const indexCacheTotal = new Counter({
  name: 'des_index_cache_total',
  help: 'Index cache lookups by result (hit/miss)',
  labelNames: ['result'] as const,
  registers: [registry],
})

export const payloadCacheTotal = new Counter({
  name: 'des_payload_cache_total',
  help: 'Decoded-payload cache lookups by result (hit/miss); only counted when the cache is on',
  labelNames: ['result'] as const,
  registers: [registry],
})

export const sourceReadsTotal = new Counter({
  name: 'des_s3_source_reads_total',
  help: 'Reads of s3:// sources while packing, by status (success/error; retry: an attempt that is retried)',
  labelNames: ['status'] as const,
  registers: [registry],
})

export const sourceReadSeconds = withReferenceLe(
  new Histogram({
    name: 'des_s3_source_read_seconds',
    help: 'Time to read one s3:// source',
    labelNames: ['status'] as const,
    buckets: REFERENCE_DEFAULT_BUCKETS,
    registers: [registry],
  }),
)

/** The reference's client library exposes its bytes counter with `_total`: this is that series. */
export const sourceBytesDownloadedTotal = new Counter({
  name: 'des_s3_source_bytes_downloaded_total',
  help: 'Bytes downloaded from s3:// sources',
  registers: [registry],
})

/** The same bytes under the name without `_total` that earlier releases of ours exported. */
export const sourceBytesDownloaded = new Counter({
  name: 'des_s3_source_bytes_downloaded',
  help: 'Bytes downloaded from s3:// sources (also as des_s3_source_bytes_downloaded_total)',
  registers: [registry],
})

export const migrationCyclesTotal = new Counter({
  name: 'des_migration_cycles_total',
  help: 'Migration cycles by status (success/failure; dry_run: a --dry-run cycle)',
  labelNames: ['status'] as const,
  registers: [registry],
})

/** As the reference counts it: every row a cycle selected and dealt with, the ones that failed included. */
export const migrationFilesTotal = new Counter({
  name: 'des_migration_files_total',
  help: 'Rows processed by migration cycles, migrated or failed (as the reference counts them)',
  registers: [registry],
})

/** Ours: only the rows migrated (packed, verified readable, marked archived), which des_migration_files_total does not tell apart. */
export const migrationFilesMigratedTotal = new Counter({
  name: 'des_migration_files_migrated_total',
  help: 'Files migrated: packed, verified readable and marked archived',
  registers: [registry],
})

export const migrationBytesTotal = new Counter({
  name: 'des_migration_bytes_total',
  help: 'Bytes of files migrated',
  registers: [registry],
})

export const migrationDurationSeconds = withReferenceLe(
  new Histogram({
    name: 'des_migration_duration_seconds',
    help: 'Duration of one migration cycle',
    buckets: MIGRATION_DURATION_BUCKETS,
    registers: [registry],
  }),
)

export const migrationPendingFiles = new Gauge({
  name: 'des_migration_pending_files',
  help: 'Rows older than the cutoff still waiting to be archived, as the last cycle began',
  registers: [registry],
})

export const migrationBatchSize = new Gauge({
  name: 'des_migration_batch_size',
  help: 'Configured batch size for migration (migration.batch_size)',
  registers: [registry],
})

export const migrationRowsSelected = new Gauge({
  name: 'des_migration_rows_selected',
  help: 'Rows the last migration cycle selected (bad rows included)',
  registers: [registry],
})

/** The reference's counter of its signed-request checks: success, invalid_sig, expired, rate_limited. */
export const authRequestsTotal = new Counter({
  name: 'des_auth_requests_total',
  help: 'Number of public key auth requests',
  labelNames: ['result'] as const,
  registers: [registry],
})

export const buildInfo = new Gauge({
  name: 'des_build_info',
  help: 'Always 1; the labels say what is running: package version, commit (or unknown), Node.js version',
  labelNames: ['version', 'commit', 'node'] as const,
  // With --workers N every worker reports the same series: take it once, do not add them up.
  aggregator: 'first',
  registers: [registry],
})
{
  const b = loadBuildInfo()
  buildInfo.labels(b.version, b.commit, b.node).set(1)
}

// Label values known before anything happens are exported at 0 from the
// start: a series that first appears at 1 shows no increase() or rate(), so an
// alert on the first failure (or on "no success yet") would never fire.

/** Retrieval statuses exported at 0 when `des serve` starts (others appear when first answered). */
export const KNOWN_RETRIEVAL_STATUSES = ['200', '206', '304', '404', '416', '502', '503'] as const

/** The results of des_auth_requests_total, as the reference counts them. */
export const AUTH_RESULTS = ['success', 'invalid_sig', 'expired', 'rate_limited'] as const

/**
 * The series of `des serve` with known labels, at 0 (`payloadCache`: only
 * when that cache is on; `signedRequests`: when authorized keys are configured).
 */
export function zeroServeSeries(storeBackend: string, opts: { payloadCache: boolean; signedRequests?: boolean }): void {
  if (opts.signedRequests) for (const result of AUTH_RESULTS) authRequestsTotal.labels(result).inc(0)
  const backend = backendLabel(storeBackend)
  for (const code of KNOWN_RETRIEVAL_STATUSES) retrievalsTotal.labels(backend, retrievalStatus(Number(code)), code).inc(0)
  corruptReadsTotal.labels(backend).inc(0)
  for (const result of ['hit', 'miss']) {
    indexCacheTotal.labels(result).inc(0)
    if (opts.payloadCache) payloadCacheTotal.labels(result).inc(0)
  }
  if (backend !== 'local') for (const type of ['tail', 'index', 'payload', 'bigfile']) s3RangeCallsTotal.labels(backend, type).inc(0)
}

/** The migration series with known labels, at 0 (`s3Sources`: when s3:// sources are enabled). */
export function zeroMigrationSeries(opts: { s3Sources: boolean }): void {
  for (const status of ['success', 'failure', 'dry_run']) migrationCyclesTotal.labels(status).inc(0)
  if (opts.s3Sources) for (const status of ['success', 'retry', 'error']) sourceReadsTotal.labels(status).inc(0)
}
