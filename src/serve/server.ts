// The `des serve` server: a node:http server that hands `/files/` to the
// responder first (no framework on the hot path) and everything else to the
// Express app; graceful shutdown on SIGTERM; `--workers N` via node:cluster.

import cluster from 'node:cluster'
import * as fs from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as path from 'node:path'
import type { DesConfig, ServeConfig } from '../config/env'
import { autoPayloadCacheBytes } from '../config/memory'
import { DesError, describe, errorCode, exitCode } from '../errors'
import { zeroServeSeries } from '../metrics'
import { createStore } from '../store'
import type { Store } from '../store/store'
import { firstFlatShardKey } from '../store/flat-probe'
import { createApp } from './app'
import { Auth } from './auth'
import { answerClusterMetrics, clusterMetricsSource, type MetricsSource } from './cluster-metrics'
import { createLogger, flushLogs, type Logger } from './log'
import { listenError } from './listen-error'
import { reloadAuthorizedKeysOnHangup } from './authorized-keys-reload'
import { answerReplayChecks, clusterReplayGuard, ReplayGuard } from './replay-guard'
import { FilesResponder } from './responder'
import { SignedRequests } from './signed-requests'
import { START_FAILURE, superviseWorkers, type StartFailure } from './supervisor'

export interface ServerDeps {
  store: Store
  auth?: Auth
  /** See `ResponderDeps.signedRequests`. */
  signedRequests?: SignedRequests
  /** See `ResponderDeps.requireAuthentication`. */
  requireAuthentication?: boolean
  logger?: Logger
  /** See `ResponderDeps.zstdPassthrough`. */
  zstdPassthrough?: boolean
  /** What `/metrics` serves (default: this process's registry). */
  metrics?: MetricsSource
  /** See `ResponderDeps.cacheControl`. */
  cacheControl?: string
}

/**
 * The origin form of an absolute-form request target, which servers must
 * accept (RFC 9112 §3.2.2): `http://host/files/x?q` → `/files/x?q`. Any
 * other target is returned as it is.
 */
export function originForm(target: string): string {
  const authority = /^https?:\/\/[^/?#]*/i.exec(target)
  if (!authority) return target
  const rest = target.slice(authority[0].length)
  return rest.startsWith('/') ? rest : `/${rest}`
}

/** A server (not listening) for the store: `/files/` → responder, the rest → Express. */
export function createServer(deps: ServerDeps): http.Server {
  const responder = new FilesResponder(deps)
  const app = createApp({ ...deps, responder, registry: deps.metrics })
  const server = http.createServer((req, res) => {
    let url = req.url ?? '/'
    // Routing and auth both go by req.url: an absolute-form target is made origin-form first.
    if (url.charCodeAt(0) !== 47) url = req.url = originForm(url)
    if (url.startsWith('/files/')) void responder.handle(req, res, url.slice(6))
    else app(req, res)
  })
  server.keepAliveTimeout = 65_000
  return server
}

/** Stops accepting, lets in-flight requests finish (up to `timeoutMs`), then resolves. */
export function shutdown(server: http.Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    // Responses finishing from now on close their connection.
    server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
      if (!res.headersSent) res.setHeader('Connection', 'close')
    })
    const idle = setInterval(() => server.closeIdleConnections(), 100)
    const force = setTimeout(() => server.closeAllConnections(), timeoutMs)
    force.unref()
    server.close(() => {
      clearInterval(idle)
      clearTimeout(force)
      resolve()
    })
    server.closeIdleConnections()
  })
}

export interface ServeOptions {
  config: DesConfig
  serve: ServeConfig
}

/** Where the store is, for the start-up line: a directory, `s3://bucket/prefix`, or the zones file. */
export function storeLabel(config: DesConfig): string {
  if (config.backend === 'local') return path.resolve(config.baseDir)
  if (config.backend === 's3' && config.s3) return `s3://${config.s3.bucket}/${config.s3.prefix}${config.s3.endpoint ? ` (${config.s3.endpoint})` : ''}`
  return `zones of ${config.zonesConfig}`
}

/**
 * Refuses a local store whose base directory is not there: served anyway,
 * every request would be a 404 that looks like an answer.
 */
export function checkBaseDir(config: DesConfig): void {
  if (config.backend !== 'local') return
  let st: fs.Stats
  try {
    st = fs.statSync(config.baseDir)
  } catch (err) {
    // The store is not there: storage unavailable (exit 6), as `des verify --store` says of it.
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read: ${code ?? describe(err)}`
    throw new DesError('DES_UNAVAILABLE', `the store's base directory ${config.baseDir} ${why} (DES_BASE_DIR or --base-dir)`)
  }
  if (!st.isDirectory()) throw new DesError('DES_CONFIG', `the store's base directory ${config.baseDir} is not a directory (DES_BASE_DIR or --base-dir)`)
}

/**
 * A warning when the store holds shards of the original's flat layout
 * (`20240501_01_0000.des` at its root) and DES_LAYOUT does not read it: the
 * original's configuration has no DES_LAYOUT, and served as nested such a
 * store answers 404 for every file while /ready says ready. A listing that
 * fails says nothing here, /ready reports the backend.
 */
export async function unreadLayoutNotice(store: Pick<Store, 'sources' | 'layouts'>): Promise<string | undefined> {
  if (store.layouts.includes('flat')) return undefined
  const flatKey = await firstFlatShardKey(store.sources.all())
  if (flatKey === undefined) return undefined
  return `the store holds shards of the original's flat layout (${flatKey}), which DES_LAYOUT=${store.layouts.join(',')} does not read: the files in them are not found; set DES_LAYOUT=flat (nested,flat while it is converted with des convert)`
}

async function warnUnreadLayout(store: Store): Promise<void> {
  const notice = await unreadLayoutNotice(store)
  if (notice) process.emitWarning(notice, { code: 'DES_LAYOUT_UNREAD' })
}

/**
 * The start-up facts of `des serve`: what it serves and with how much cache.
 * `nBits` is the store's, the one routing uses (a zones file's own n_bits).
 */
function startupFields(opts: ServeOptions, payloadCacheBytes: number, nBits: number) {
  return {
    backend: opts.config.backend,
    store: storeLabel(opts.config),
    layout: (opts.config.readLayouts ?? [opts.config.layout]).join(','),
    nBits,
    workers: opts.serve.workers,
    indexCacheBytes: opts.config.indexCacheBytes,
    payloadCacheBytes,
  }
}

function mib(bytes: number): string {
  return `${Math.round((bytes / 1048576) * 10) / 10} MiB`
}

function startupText(f: ReturnType<typeof startupFields>): string {
  return (
    `${f.backend} store ${f.store}, ${f.layout} layout, n_bits ${f.nBits}, ${f.workers} worker${f.workers === 1 ? '' : 's'}, ` +
    `index cache ${mib(f.indexCacheBytes)}, payload cache ${mib(f.payloadCacheBytes)}${f.workers > 1 ? ' each' : ''}`
  )
}

/** Builds the store and listens; resolves to the server once it accepts connections. */
export async function listen(opts: ServeOptions, logger: Logger): Promise<http.Server> {
  // Unset: an eighth of the memory limit shared by the workers, at most 1 GiB each.
  const payloadCacheBytes = opts.config.payloadCacheBytes ?? autoPayloadCacheBytes(opts.serve.workers)
  const store = createStore({ ...opts.config, payloadCacheBytes }, {
    maxAttempts: opts.serve.s3MaxAttempts,
    connectionTimeoutMs: opts.serve.s3ConnectTimeoutMs,
    requestTimeoutMs: opts.serve.s3RequestTimeoutMs,
  })
  // Once, in the process that starts the server (workers: the primary did).
  if (cluster.isPrimary) await warnUnreadLayout(store)
  const auth = new Auth(opts.serve.apiKeys, opts.serve.authOpenPaths)
  const authorizedKeys = opts.serve.authorizedKeys
  // A worker's nonces and rate windows are the primary's, shared by all workers.
  const signedRequests = authorizedKeys
    ? new SignedRequests({ keys: authorizedKeys, admitter: cluster.isWorker ? clusterReplayGuard() : new ReplayGuard(opts.serve.maxNonces), logger })
    : undefined
  zeroServeSeries(store.backend, { payloadCache: payloadCacheBytes > 0, signedRequests: signedRequests !== undefined })
  // A worker's /metrics is the whole cluster's, collected by the primary.
  const metrics = cluster.isWorker ? clusterMetricsSource() : undefined
  const server = createServer({
    store,
    auth,
    signedRequests,
    requireAuthentication: opts.serve.requireAuthentication,
    logger,
    zstdPassthrough: opts.serve.zstdPassthrough,
    cacheControl: opts.serve.cacheControl,
    metrics,
  })
  await new Promise<void>((resolve, reject) => {
    // Only while listening: a later error is not a listen error, nor swallowed here.
    const failed = (err: Error) => reject(listenError(err, opts.serve.host, opts.serve.port))
    server.once('error', failed)
    server.listen(opts.serve.port, opts.serve.host, () => {
      server.off('error', failed)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  const fields = startupFields(opts, payloadCacheBytes, store.nBits)
  logger.info(
    {
      port: addr.port,
      host: addr.address,
      ...fields,
      auth: auth.enabled,
      authorizedKeys: authorizedKeys?.size,
      worker: cluster.isWorker ? cluster.worker?.id : undefined,
    },
    `des serve listening on http://${host}:${addr.port}: ${startupText(fields)}`,
  )
  return server
}

/** One serving process: listen, then on SIGTERM/SIGINT finish in-flight requests and exit 0. */
async function serveHere(opts: ServeOptions, logger: Logger): Promise<void> {
  // Before listening: the primary passes SIGHUP on to a worker once it listens, and Node's default would end it.
  if (opts.serve.authorizedKeys && opts.serve.authorizedKeysPath) reloadAuthorizedKeysOnHangup(opts.serve.authorizedKeys, opts.serve.authorizedKeysPath, logger)
  const server = await listen(opts, logger)
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) {
      // A second signal: do not wait any longer.
      logger.warn({ signal }, 'second signal: closing every connection now')
      server.closeAllConnections()
      flushLogs(logger)
      process.exit(1)
    }
    stopping = true
    logger.info({ signal }, 'shutting down: finishing in-flight requests')
    void shutdown(server, opts.serve.shutdownTimeoutMs).then(() => {
      logger.info('stopped')
      flushLogs(logger)
      process.exit(0)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  // Ctrl-C in a terminal sends SIGINT to the primary and every worker at
  // once, and the primary passes it on as SIGTERM: a worker taking the two
  // as two signals dropped its requests in flight. The primary's word decides.
  process.on('SIGINT', () => (cluster.isWorker ? undefined : stop('SIGINT')))
}

/** `des serve`: one process, or a primary with `serve.workers` workers sharing the port. */
export async function serve(opts: ServeOptions): Promise<void> {
  const logger = createLogger(opts.serve.logLevel)
  if (cluster.isPrimary) checkBaseDir(opts.config)
  if (opts.serve.workers > 1 && cluster.isPrimary) {
    const store = createStore(opts.config) // refuse a bad config (zones file...) here, before forking
    await warnUnreadLayout(store)
    const fields = startupFields(opts, opts.config.payloadCacheBytes ?? autoPayloadCacheBytes(opts.serve.workers), store.nBits)
    logger.info(fields, `des serve starting: ${startupText(fields)}`)
    answerClusterMetrics()
    if (opts.serve.authorizedKeys) answerReplayChecks(new ReplayGuard(opts.serve.maxNonces))
    return superviseWorkers(opts.serve.workers, logger, { forwardHangup: opts.serve.authorizedKeys !== undefined })
  }
  if (cluster.isWorker) {
    // A worker's IPC channel keeps it alive: leave explicitly when start-up fails.
    return serveHere(opts, logger).catch((err) => {
      logger.fatal({ err: { message: describe(err), code: errorCode(err) } }, `worker cannot serve: ${describe(err)}`)
      flushLogs(logger)
      // The primary writes the line (once for all workers) and exits with the code.
      const failure: StartFailure = { type: START_FAILURE, message: describe(err), exitCode: exitCode(err) }
      process.send!(failure, () => process.exit(failure.exitCode))
    })
  }
  await serveHere(opts, logger)
}
