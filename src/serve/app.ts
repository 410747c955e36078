// `createApp(deps)`: the Express app of `des serve` — /health, /ready,
// /metrics and /files (through the responder). It never listens: `des serve`
// and the tests put it behind a server of their own.

import express, { type Express, type NextFunction, type Request, type Response } from 'express'
import { DesError } from '../errors'
import { registry as defaultRegistry, writeMetrics } from '../metrics'
import type { Store } from '../store/store'
import type { Auth } from './auth'
import type { MetricsSource } from './cluster-metrics'
import { requestId, sendError } from './http-error'
import { logRequest, silentLogger, type Logger } from './log'
import { FilesResponder } from './responder'
import { desRouter } from './router'

export interface AppDeps {
  store: Store
  auth?: Auth
  logger?: Logger
  /** What `/metrics` serves: the process's registry by default; with `--workers N`, every worker's (./cluster-metrics.ts). */
  registry?: MetricsSource
  /** Shared with the server's fast path, so both count into one set of metrics children. */
  responder?: FilesResponder
}

/** Paths the responder answers (it has its own request id, auth and log line). */
function isFilesPath(path: string): boolean {
  return path === '/files' || path.startsWith('/files/')
}

export function createApp(deps: AppDeps): Express {
  const logger = deps.logger ?? silentLogger
  const registry = deps.registry ?? defaultRegistry
  const responder = deps.responder ?? new FilesResponder(deps)
  const app = express()
  app.disable('x-powered-by')
  app.disable('etag')
  // Before the first route: Express builds its router from these settings.
  app.enable('case sensitive routing')
  app.enable('strict routing')

  // A request id and one log line per request (the responder does both for /files).
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (!isFilesPath(req.path)) {
      const start = performance.now()
      const id = requestId(req)
      res.locals.requestId = id
      res.setHeader('X-Request-Id', id)
      res.on('finish', () => logRequest(logger, req, res, start, { id }))
    }
    next()
  })

  // The routes, each with the scope a key needs for it. Routing is
  // case-sensitive and strict (above), so Express hands a request to one of
  // them only when its path is exactly the route's: auth looks the request up
  // here by that same path. `/METRICS`, `/metrics/` or `//metrics` reach no
  // route, and are 404 once a valid key is shown.
  const routes = new Map<string, { scope?: string; handler: (req: Request, res: Response, next: NextFunction) => unknown }>([
    ['/health', { handler: (_req, res) => res.json({ status: 'ok' }) }],
    [
      '/ready',
      {
        handler: async (req, res) => {
          try {
            await deps.store.ping()
            res.json({ status: 'ready', backend: deps.store.backend })
          } catch (err) {
            logger.warn({ request_id: res.locals.requestId, err }, 'not ready')
            sendError(req, res, err, res.locals.requestId, 503)
          }
        },
      },
    ],
    [
      '/metrics',
      {
        scope: 'metrics',
        handler: async (_req, res, next) => {
          try {
            await writeMetrics(res, registry)
          } catch (err) {
            next(err)
          }
        },
      },
    ],
  ])

  const auth = deps.auth
  if (auth?.enabled) {
    app.use((req: Request, res: Response, next: NextFunction) => {
      if (isFilesPath(req.path) || auth.isOpen(req.path)) return next()
      // An unknown path needs a valid key too (then 404): routes are not probed without one.
      const denied = auth.check(req, routes.get(req.path)?.scope)
      if (denied) return void sendError(req, res, denied, res.locals.requestId)
      next()
    })
  }

  for (const [path, route] of routes) {
    app.get(path, route.handler)
    // As the original (FastAPI) answers: another method is 405, the path with
    // a slash a 307 to the path without it (which auth then checks as itself).
    app.all(path, (req: Request, res: Response) => {
      res.setHeader('Allow', 'GET, HEAD')
      sendError(req, res, new DesError('DES_METHOD', `${req.method} is not allowed on ${path}`), res.locals.requestId)
    })
    app.all(`${path}/`, (req: Request, res: Response) => {
      const q = req.originalUrl.indexOf('?')
      res.redirect(307, q < 0 ? path : path + req.originalUrl.slice(q))
    })
  }
  app.use('/files', desRouter(responder))

  app.use((req: Request, res: Response) => {
    sendError(req, res, new DesError('DES_NOT_FOUND', `no route ${req.method} ${req.path}`), res.locals.requestId ?? requestId(req))
  })

  // Never a stack trace in a response.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const id: string = res.locals.requestId ?? requestId(req)
    logger.error({ request_id: id, err }, 'unhandled error')
    if (res.headersSent) return res.destroy()
    sendError(req, res, err, id)
  })
  return app
}
