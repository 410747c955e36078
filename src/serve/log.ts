// Structured logs (pino): one JSON line per request, level from DES_LOG_LEVEL.

import type { IncomingMessage, ServerResponse } from 'node:http'
import pino, { type Logger } from 'pino'
import type { LogLevel } from '../config/env'

export type { Logger } from 'pino'

/**
 * The process logger: JSON lines on stdout, written in batches of 8 KiB (one
 * write per line would put a thread-pool write beside every request), flushed
 * at least once a second and on shutdown.
 */
export function createLogger(level: LogLevel = 'info'): Logger {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 8192 })
  setInterval(() => dest.flush(), 1000).unref()
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest)
}

/** A logger that drops everything (tests, embedding without logs). */
export const silentLogger: Logger = pino({ level: 'silent' })

/** What a request log line says beside the request and its response. */
export interface RequestOutcome {
  id?: string
  /** Given only for a failure on our side (any 5xx, or a response cut short after its headers). */
  err?: unknown
  /** The status it counts as (default the response's: a client that left is 499 whatever went out). */
  status?: number
  /** Body bytes that went out (default its Content-Length). */
  bytes?: number
}

/**
 * Logs one finished request: request id, method, url, status, bytes,
 * milliseconds. With `err` the line is at error level and holds the error's
 * full detail (message, code, cause, stack), which the client's body leaves
 * out.
 */
export function logRequest(logger: Logger, req: IncomingMessage, res: ServerResponse, startMs: number, outcome: RequestOutcome = {}): void {
  const { id, err } = outcome
  const status = outcome.status ?? res.statusCode
  if (!logger.isLevelEnabled('info')) {
    if (err !== undefined) logger.error({ request_id: id, method: req.method, url: req.url, status, err }, 'request failed')
    return
  }
  const line = {
    request_id: id,
    method: req.method,
    url: (req as { originalUrl?: string }).originalUrl ?? req.url,
    status,
    bytes: outcome.bytes ?? Number(res.getHeader('content-length') ?? 0),
    ms: Math.round((performance.now() - startMs) * 100) / 100,
    ...(err !== undefined ? { err } : {}),
  }
  if (err !== undefined || status >= 500) logger.error(line, 'request failed')
  else logger.info(line, 'request')
}

/** Writes out buffered log lines before the process exits. */
export function flushLogs(logger: Logger): void {
  const stream = (logger as unknown as Record<symbol, { flushSync?: () => void } | undefined>)[pino.symbols.streamSym]
  try {
    if (stream?.flushSync) stream.flushSync()
    else logger.flush()
  } catch {
    logger.flush() // not open yet: nothing was buffered
  }
}
