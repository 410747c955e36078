// Structured logs (pino): one JSON line per request, level from DES_LOG_LEVEL.

import type { IncomingMessage, ServerResponse } from 'node:http'
import pino, { type Logger } from 'pino'
import type { LogLevel } from '../config/env'

export type { Logger } from 'pino'

/** The process logger, writing to stdout without blocking the event loop. */
export function createLogger(level: LogLevel = 'info', sync = false): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync }))
}

/** A logger that drops everything (tests, embedding without logs). */
export const silentLogger: Logger = pino({ level: 'silent' })

/** Logs one finished request: method, url, status, bytes, milliseconds. */
export function logRequest(logger: Logger, req: IncomingMessage, res: ServerResponse, startMs: number, err?: unknown): void {
  if (!logger.isLevelEnabled('info')) {
    if (err !== undefined && res.statusCode >= 500) logger.error({ method: req.method, url: req.url, status: res.statusCode, err }, 'request failed')
    return
  }
  const line = {
    method: req.method,
    url: (req as { originalUrl?: string }).originalUrl ?? req.url,
    status: res.statusCode,
    bytes: Number(res.getHeader('content-length') ?? 0),
    ms: Math.round((performance.now() - startMs) * 100) / 100,
    ...(err !== undefined ? { err } : {}),
  }
  if (res.statusCode >= 500) logger.error(line, 'request failed')
  else logger.info(line, 'request')
}
