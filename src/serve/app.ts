// `createApp(deps)`: the Express app of `des serve` — /health, /ready,
// /metrics and /files (through the responder). It never listens: `des serve`
// and the tests put it behind a server of their own.

import express, { type Express, type NextFunction, type Request, type Response } from 'express'
import type { Registry } from 'prom-client'
import { errorCode, httpStatus } from '../errors'
import { registry as defaultRegistry } from '../metrics'
import type { Store } from '../store/store'
import type { Auth } from './auth'
import { logRequest, silentLogger, type Logger } from './log'
import { FilesResponder } from './responder'
import { desRouter } from './router'

export interface AppDeps {
  store: Store
  auth?: Auth
  logger?: Logger
  registry?: Registry
  /** Shared with the server's fast path, so both count into one set of metrics children. */
  responder?: FilesResponder
}

function sendError(res: Response, err: unknown): void {
  const code = errorCode(err)
  const message = code === 'DES_INTERNAL' ? 'internal error' : (err as Error)?.message ?? String(err)
  res.status(httpStatus(err)).json({ error: message, code })
}

export function createApp(deps: AppDeps): Express {
  const logger = deps.logger ?? silentLogger
  const registry = deps.registry ?? defaultRegistry
  const responder = deps.responder ?? new FilesResponder(deps)
  const app = express()
  app.disable('x-powered-by')
  app.disable('etag')

  // One log line per request (the responder logs /files itself).
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (!req.path.startsWith('/files/')) {
      const start = performance.now()
      res.on('finish', () => logRequest(logger, req, res, start))
    }
    next()
  })

  const auth = deps.auth
  if (auth?.enabled) {
    app.use((req: Request, res: Response, next: NextFunction) => {
      if (req.path.startsWith('/files/') || auth.isOpen(req.path)) return next()
      const denied = auth.check(req, req.path === '/metrics' ? 'metrics' : undefined)
      if (denied) {
        if (httpStatus(denied) === 401) res.setHeader('WWW-Authenticate', 'Bearer')
        return sendError(res, denied)
      }
      next()
    })
  }

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' })
  })

  app.get('/ready', async (_req, res) => {
    try {
      await deps.store.ping()
      res.json({ status: 'ready', backend: deps.store.backend })
    } catch (err) {
      const code = errorCode(err)
      res.status(503).json({ error: code === 'DES_INTERNAL' ? 'backend not reachable' : (err as Error).message, code })
    }
  })

  app.get('/metrics', async (_req, res, next) => {
    try {
      const text = await registry.metrics()
      res.setHeader('Content-Type', registry.contentType)
      res.end(text)
    } catch (err) {
      next(err)
    }
  })

  app.use('/files', desRouter(responder))

  app.use((req: Request, res: Response) => {
    res.status(404).json({ error: `no route ${req.method} ${req.path}`, code: 'DES_NOT_FOUND' })
  })

  // Never a stack trace in a response.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    logger.error({ err }, 'unhandled error')
    if (res.headersSent) return res.destroy()
    sendError(res, err)
  })
  return app
}
