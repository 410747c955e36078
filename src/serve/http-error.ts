// Request ids and the one shape of every error response of des serve (the
// responder, the Express app, desRouter):
//   {"error": "<short message>", "code": "DES_…", "request_id": "<id>", "detail": …}
// `detail` is what the reference (a FastAPI app) answers in the same case
// ("File not found", "Invalid created_at format", its validation list for a
// missing created_at, "Not Found" for a path it has no route for), so clients
// written against it keep working; where it has no such case, our message.
// A failure on our side says a fixed text per code (`httpMessage`): its own
// message names paths and may echo stored bytes, so that detail goes only to
// the server's log line, which carries the same request id.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { errorCode, httpMessage, httpStatus } from '../errors'

const JSON_TYPE = 'application/json; charset=utf-8'

/** An incoming `X-Request-Id` we pass on: 1..128 printable ASCII characters, no spaces. */
const SANE_ID = /^[\x21-\x7e]{1,128}$/

/** Generated ids: this process and its start, then a counter (unique across workers and restarts). */
const ID_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36)}-`
let idCounter = 0

/** The request's id: its own `X-Request-Id` when that is sane, else a new one. */
export function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  if (typeof given === 'string' && SANE_ID.test(given)) return given
  return ID_PREFIX + (++idCounter).toString(36)
}

/** An error's `detail` (set where the reference's answer is known), else the reference's generic one for the status, else `error`. */
function detailOf(err: unknown, status: number, error: string): unknown {
  const given = (err as { detail?: unknown } | null)?.detail
  if (given !== undefined) return given
  if (status === 404) return 'Not Found'
  if (status === 405) return 'Method Not Allowed'
  return error
}

/**
 * Answers `err` as `status` (default: the code's) with the JSON error body and
 * `X-Request-Id`; 401 adds `WWW-Authenticate`, 416 `Content-Range`. Returns
 * the body's length.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, id: string, status = httpStatus(err)): number {
  const error = httpMessage(err, status)
  const body = JSON.stringify({ error, code: errorCode(err), request_id: id, detail: detailOf(err, status, error) })
  const headers = ['Content-Type', JSON_TYPE, 'Content-Length', String(Buffer.byteLength(body)), 'X-Request-Id', id]
  if (status === 401) headers.push('WWW-Authenticate', 'Bearer')
  if (status === 416) headers.push('Content-Range', `bytes */${(err as { size?: number }).size ?? '*'}`)
  res.writeHead(status, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
  return body.length
}
