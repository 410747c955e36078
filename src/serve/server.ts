// The `des serve` server: a node:http server that hands `/files/` to the
// responder first (no framework on the hot path) and everything else to the
// Express app; graceful shutdown on SIGTERM; `--workers N` via node:cluster.

import cluster from 'node:cluster'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { DesConfig, ServeConfig } from '../config/env'
import { autoPayloadCacheBytes } from '../config/memory'
import { describe, errorCode, exitCode } from '../errors'
import { createStore } from '../store'
import type { Store } from '../store/store'
import { createApp } from './app'
import { Auth } from './auth'
import { createLogger, flushLogs, type Logger } from './log'
import { FilesResponder } from './responder'

export interface ServerDeps {
  store: Store
  auth?: Auth
  logger?: Logger
  /** See `ResponderDeps.zstdPassthrough`. */
  zstdPassthrough?: boolean
}

/** A server (not listening) for the store: `/files/` → responder, the rest → Express. */
export function createServer(deps: ServerDeps): http.Server {
  const responder = new FilesResponder(deps)
  const app = createApp({ ...deps, responder })
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
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

/** Builds the store and listens; resolves to the server once it accepts connections. */
export async function listen(opts: ServeOptions, logger: Logger): Promise<http.Server> {
  // Unset: an eighth of the memory limit shared by the workers, at most 1 GiB each.
  const payloadCacheBytes = opts.config.payloadCacheBytes ?? autoPayloadCacheBytes(opts.serve.workers)
  const store = createStore({ ...opts.config, payloadCacheBytes }, {
    maxAttempts: opts.serve.s3MaxAttempts,
    connectionTimeoutMs: opts.serve.s3ConnectTimeoutMs,
    requestTimeoutMs: opts.serve.s3RequestTimeoutMs,
  })
  const auth = new Auth(opts.serve.apiKeys, opts.serve.authOpenPaths)
  const server = createServer({ store, auth, logger, zstdPassthrough: opts.serve.zstdPassthrough })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.serve.port, opts.serve.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  logger.info(
    {
      port: addr.port,
      host: addr.address,
      backend: store.backend,
      layout: store.layout,
      auth: auth.enabled,
      payloadCacheBytes,
      worker: cluster.isWorker ? cluster.worker?.id : undefined,
    },
    `des serve listening on http://${host}:${addr.port}`,
  )
  return server
}

/** One serving process: listen, then on SIGTERM/SIGINT finish in-flight requests and exit 0. */
async function serveHere(opts: ServeOptions, logger: Logger): Promise<void> {
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
  process.on('SIGINT', () => stop('SIGINT'))
}

/** The primary of `--workers N`: forks, restarts crashed workers, forwards SIGTERM and exits 0 when all are gone. */
function superviseWorkers(opts: ServeOptions, logger: Logger): void {
  let stopping = false
  const fork = () => {
    const w = cluster.fork()
    w.once('listening', () => listening.add(w.id))
  }
  const listening = new Set<number>()
  for (let i = 0; i < opts.serve.workers; i++) fork()
  cluster.on('exit', (worker, code, signal) => {
    const alive = Object.keys(cluster.workers ?? {}).length
    if (stopping) {
      if (alive === 0) {
        logger.info('all workers stopped')
        flushLogs(logger)
        process.exit(process.exitCode ?? 0)
      }
      return
    }
    if (!listening.has(worker.id)) {
      // A worker that never listened will not do better the next time (bad config, port taken).
      logger.fatal({ worker: worker.id, code, signal }, 'worker failed to start; stopping')
      stop('SIGTERM')
      process.exitCode = 1
      if (alive === 0) process.exit(1)
      return
    }
    logger.error({ worker: worker.id, code, signal }, 'worker died, starting another')
    fork()
  })
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    logger.info({ signal, workers: opts.serve.workers }, 'shutting down workers')
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM')
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(process.exitCode ?? 0)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

/** `des serve`: one process, or a primary with `serve.workers` workers sharing the port. */
export async function serve(opts: ServeOptions): Promise<void> {
  const logger = createLogger(opts.serve.logLevel)
  if (opts.serve.workers > 1 && cluster.isPrimary) {
    createStore(opts.config) // refuse a bad config (zones file...) here, before forking
    return superviseWorkers(opts, logger)
  }
  if (cluster.isWorker) {
    // A worker's IPC channel keeps it alive: leave explicitly when start-up fails.
    return serveHere(opts, logger).catch((err) => {
      logger.fatal({ err: { message: describe(err), code: errorCode(err) } }, `worker cannot serve: ${describe(err)}`)
      flushLogs(logger)
      process.stderr.write(`des: ${describe(err)}\n`)
      process.exit(exitCode(err))
    })
  }
  await serveHere(opts, logger)
}
