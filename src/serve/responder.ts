// The framework-free responder for `GET /files/:uid?created_at=…`: parse,
// auth, locate, read, headers, Range, ETag, errors, metrics and the request
// log line, once. Express (`desRouter`) and the `des serve` server both hand
// requests to it.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import rangeParser from 'range-parser'
import { DesError, errorCode, httpStatus } from '../errors'
import { backendLabel, corruptReadsTotal, retrievalSeconds, retrievalStatus, retrievalsTotal } from '../metrics'
import type { Found, Store } from '../store/store'
import type { Auth } from './auth'
import { signedHeadersOf, type SignedRequests } from './signed-requests'
import { BufferPool } from './buffer-pool'
import { requestId, sendError } from './http-error'
import { logRequest, silentLogger, type Logger } from './log'
import { MAX_UID_BYTES, uidBytesOverLimit } from '../store/uid'
import { Budget } from '../budget'

/**
 * Bytes of file bodies held in memory until they have gone out, for all
 * responses of a process together: a file stored in a shard is read whole
 * (its checksum is checked before its first byte is sent), and a client
 * that reads slowly or not at all holds its body until then. Past this,
 * responses wait for room instead of the server running out of memory.
 */
export const DEFAULT_BODY_BYTES_IN_FLIGHT = 256 * 1024 * 1024
/** A response whose client takes nothing for this long is cut off, its connection closed (and its bytes let go). */
export const DEFAULT_SEND_IDLE_MS = 60_000

export interface ResponderDeps {
  store: Store
  auth?: Auth
  /**
   * The original's signed requests (X-DES-* headers): a request carrying any
   * of them is decided by these checks, not by `auth`.
   */
  signedRequests?: SignedRequests
  /**
   * DES_REQUIRE_AUTHENTICATION: a request with neither an API key nor a
   * signature is refused (401 "Authentication required") even when no API
   * key is configured.
   */
  requireAuthentication?: boolean
  logger?: Logger
  /** Send zstd entries as stored, `Content-Encoding: zstd`, to clients that accept it. */
  zstdPassthrough?: boolean
  /** `Cache-Control` of file responses (200, 206, 304); none when unset (`DES_CACHE_CONTROL`). */
  cacheControl?: string
  /** The room for bodies in memory (default DEFAULT_BODY_BYTES_IN_FLIGHT bytes; tests give their own). */
  bodies?: Budget
  /** Default DEFAULT_SEND_IDLE_MS (tests set less). */
  sendIdleMs?: number
}

/** Whether a response is over, and when it is. */
interface LastResponse {
  over: boolean
  closed: Promise<void>
}

/** One connection: its last response, and what is to run when it goes. */
interface Connection {
  socket: Socket
  last?: LastResponse
  /** Set on the socket's 'close'; see `isGone` for the check. */
  gone: boolean
  /**
   * Run when the connection closes: a response queued behind others on a
   * connection the client dropped never emits 'close' (one listener on the
   * socket for all of them, however many requests it carries).
   */
  onGone: Set<() => void>
}

/**
 * Whether the client has left. The socket is destroyed a tick before its
 * 'close': a response cut off by the drop emits 'finish' and 'close' in
 * between, and the request queued behind it must already see the drop.
 */
function isGone(connection: Connection): boolean {
  return connection.gone || connection.socket.destroyed
}

const OCTET = 'application/octet-stream'
const HEADER_SAFE = /^[\x20-\x7e]{1,256}$/

const HEX = /^[0-9A-Fa-f]{2}$/

/**
 * `text` percent-decoded as the reference decodes a path (Python's
 * `unquote`): a `%` not followed by two hex digits stays itself (`100%` is
 * the uid `100%`), and bytes that are no UTF-8 become U+FFFD.
 */
export function unquote(text: string): string {
  if (!text.includes('%')) return text
  let out = ''
  let bytes: number[] = []
  for (let i = 0; i < text.length; ) {
    if (text.charCodeAt(i) === 0x25 && HEX.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16))
      i += 3
      continue
    }
    if (bytes.length > 0) {
      out += Buffer.from(bytes).toString('utf8')
      bytes = []
    }
    out += text[i++]
  }
  return bytes.length > 0 ? out + Buffer.from(bytes).toString('utf8') : out
}

/** A parameter name as the reference reads it (percent-decoded); itself when it cannot be decoded. */
function paramName(raw: string): string {
  if (!raw.includes('%')) return raw
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

/**
 * The value of `name` in a query string, percent-decoded, names too (as the
 * reference decodes them). `+` is kept as `+`, so `+00:00` offsets survive
 * unencoded; with `plusIsSpace` it is a space first, as the reference
 * (Starlette) reads a query: the text the original's clients sign. Given
 * twice, the last one counts, as in the reference (FastAPI).
 */
export function queryParam(query: string, name: string, plusIsSpace = false): string | undefined {
  let found: string | undefined
  let i = 0
  while (i <= query.length) {
    let amp = query.indexOf('&', i)
    if (amp < 0) amp = query.length
    const eq = query.indexOf('=', i)
    const keyEnd = eq >= 0 && eq < amp ? eq : amp
    const percent = query.indexOf('%', i)
    const encodedName = percent >= 0 && percent < keyEnd
    if (encodedName ? paramName(query.slice(i, keyEnd)) === name : keyEnd - i === name.length && query.startsWith(name, i)) {
      found = keyEnd < amp ? query.slice(keyEnd + 1, amp) : ''
    }
    i = amp + 1
  }
  if (found === undefined) return undefined
  if (plusIsSpace) found = found.replace(/\+/g, ' ')
  return found.includes('%') ? decodeURIComponent(found) : found
}

/**
 * An error whose body also carries `detail`: the reference's own answer to
 * the same request, so a client written against it reads the same thing.
 */
export function withDetail<E>(err: E, detail: unknown): E {
  if (err instanceof DesError && (err as { detail?: unknown }).detail === undefined) Object.assign(err, { detail })
  return err
}

/** What the reference answers for a query without created_at (FastAPI's validation error). */
const MISSING_CREATED_AT = [{ type: 'missing', loc: ['query', 'created_at'], msg: 'Field required', input: null }]

/** The reference's answer to a malformed created_at. */
const BAD_CREATED_AT = 'Invalid created_at format'

/** The reference's answer when no shard holds the uid. */
const FILE_NOT_FOUND = 'File not found'

/** `Content-Type` from an entry's meta (`content_type` or `mime`), else octet-stream. */
export function contentTypeOf(meta: string): string {
  if (meta.length <= 2) return OCTET
  try {
    const m = JSON.parse(meta) as Record<string, unknown>
    const t = m.content_type ?? m.mime
    return typeof t === 'string' && HEADER_SAFE.test(t) ? t : OCTET
  } catch {
    return OCTET
  }
}

/** True when an `Accept-Encoding` header accepts zstd (listed, and not with q=0). */
export function acceptsZstd(header: string | undefined): boolean {
  if (header === undefined || !header.includes('zstd')) return false
  for (const part of header.split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim())
    if (coding.toLowerCase() !== 'zstd') continue
    const q = params.find((p) => p.toLowerCase().startsWith('q='))
    return q === undefined || Number(q.slice(2)) > 0
  }
  return false
}

/** True when an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 says for it). */
export function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === '*') return true
  for (let tag of header.split(',')) {
    tag = tag.trim()
    if (tag.startsWith('W/')) tag = tag.slice(2)
    if (tag === etag) return true
  }
  return false
}

/** A suffix spec (`-N`) anywhere in a Range header. */
const SUFFIX_SPEC = /[=,]\s*-/

/**
 * The one byte range a `Range` header selects in `size` bytes: a range, -1
 * when unsatisfiable, or undefined to send the whole file (not `bytes`, or
 * several ranges: RFC 9110 allows the whole file instead of multipart). A
 * suffix `-N` longer than the file selects all of it (RFC 9110 §14.1.3;
 * range-parser calls that unsatisfiable); `-0` selects nothing.
 */
export function byteRange(size: number, header: string): { start: number; end: number } | -1 | undefined {
  if (SUFFIX_SPEC.test(header)) {
    const eq = header.indexOf('=')
    const specs = header.slice(eq + 1).split(',').map((spec) => {
      const suffix = spec.trim()
      return suffix[0] === '-' && /^-\d+$/.test(suffix) && Number(suffix.slice(1)) > size ? '0-' : spec
    })
    header = header.slice(0, eq + 1) + specs.join(',')
  }
  const ranges = rangeParser(size, header, { combine: true })
  if (ranges === -1) return -1
  if (ranges === -2 || ranges.type !== 'bytes' || ranges.length !== 1) return undefined
  return ranges[0]
}

/** The entry was replaced between finding it and reading it (its headers no longer fit). */
function changedMeanwhile(uid: string): DesError {
  return new DesError('DES_CONFLICT', `uid ${JSON.stringify(uid)} changed while it was being read; retry`)
}

/** The code a response counts as when its client closed the connection before the end (as nginx logs it). */
const CLIENT_CLOSED = 499

/**
 * Bytes of a streamed body (a BigFile) handed to the socket in one write,
 * each once the one before has gone to the kernel: a client that leaves
 * half-way is logged with what went out, to a slice. A body held in memory
 * goes out in one write (sliced, a 1 MB file was answered ~40% less often
 * per second): cut short, the share of it the kernel took is not known.
 */
const SEND_SLICE_BYTES = 64 * 1024

/** What of one response went out. */
interface Sent {
  /** Its end went to the kernel before its client left ('finish' with the connection still there). */
  whole: boolean
  /** Body bytes of the slices that went out before its end (see sendBody; 0 for a body sent in one write). */
  bodyBytes: number
}

/** Resolves on the response's 'drain' or 'close', whichever comes first (at once when it is closed already). */
function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    const go = () => {
      res.off('drain', go)
      res.off('close', go)
      resolve()
    }
    res.on('drain', go)
    res.on('close', go)
  })
}

/** A stream's chunks in pieces of at most SEND_SLICE_BYTES. */
async function* slicesOf(body: Readable): AsyncGenerator<Buffer> {
  for await (const chunk of body as AsyncIterable<Buffer>) {
    for (let at = 0; at < chunk.length; at += SEND_SLICE_BYTES) yield chunk.subarray(at, at + SEND_SLICE_BYTES)
  }
}

/** A file removed between finding and reading it is not found, in the reference's words. */
function goneMeanwhile(err: unknown): never {
  throw errorCode(err) === 'DES_NOT_FOUND' ? withDetail(err, FILE_NOT_FOUND) : err
}

export class FilesResponder {
  readonly store: Store
  private readonly pool = new BufferPool()
  private readonly auth: Auth | undefined
  private readonly signedRequests: SignedRequests | undefined
  private readonly requireAuthentication: boolean
  private readonly logger: Logger
  private readonly logInfo: boolean
  private readonly zstdPassthrough: boolean
  /** `['Cache-Control', value]`, or nothing, appended to the headers of every file response. */
  private readonly cacheHeaders: string[]
  private readonly seconds
  private readonly corrupt
  private readonly outcomes = new Map<number, { inc(): void }>()
  /** The store's backend as the metrics name it (zones count as `s3`, as in the reference). */
  private readonly metricsBackend: string
  private readonly bodies: Budget
  private readonly sendIdleMs: number
  /** Each connection's state (see `handle`). */
  private readonly connections = new WeakMap<Socket, Connection>()
  /** Bytes of `bodies` each response holds (one share, however often it is answered). */
  private readonly holding = new WeakMap<ServerResponse, number>()
  /** What of each response went out (set in `handle`, read in `done`). */
  private readonly sent = new WeakMap<ServerResponse, Sent>()

  constructor(deps: ResponderDeps) {
    this.store = deps.store
    this.auth = deps.auth?.enabled ? deps.auth : undefined
    this.signedRequests = deps.signedRequests
    this.requireAuthentication = deps.requireAuthentication ?? false
    this.logger = deps.logger ?? silentLogger
    this.logInfo = this.logger.isLevelEnabled('info')
    this.zstdPassthrough = deps.zstdPassthrough ?? false
    this.cacheHeaders = deps.cacheControl ? ['Cache-Control', deps.cacheControl] : []
    this.metricsBackend = backendLabel(this.store.backend)
    this.bodies = deps.bodies ?? new Budget(DEFAULT_BODY_BYTES_IN_FLIGHT)
    this.sendIdleMs = deps.sendIdleMs ?? DEFAULT_SEND_IDLE_MS
    this.seconds = retrievalSeconds.labels(this.metricsBackend)
    this.corrupt = corruptReadsTotal.labels(this.metricsBackend)
  }

  private count(status: number, startMs: number): void {
    let c = this.outcomes.get(status)
    if (!c) this.outcomes.set(status, (c = retrievalsTotal.labels(this.metricsBackend, retrievalStatus(status), String(status))))
    c.inc()
    this.seconds.observe((performance.now() - startMs) / 1000)
  }

  /**
   * Counts and logs a request once its response is over; `err` only for a
   * failure on our side (see logRequest), `bodyBytes` its body's length. A
   * response whose client left before its end (nothing was sent, or not all)
   * counts as CLIENT_CLOSED, logged with the body bytes that went out: every
   * kind of response is decided here, from what `handle` and `sendBody` saw.
   */
  private done(req: IncomingMessage, res: ServerResponse, startMs: number, id: string, err?: unknown, bodyBytes = 0): void {
    this.whenOver(this.connectionOf(req.socket), res, () => {
      const sent = this.sent.get(res) ?? { whole: true, bodyBytes }
      // A failure after a success status was sent (a body cut short) counts as the failure it is.
      const status = err !== undefined && res.statusCode < 400 ? httpStatus(err) : err === undefined && !sent.whole ? CLIENT_CLOSED : res.statusCode
      this.count(status, startMs)
      if (err !== undefined && errorCode(err) === 'DES_CORRUPT') this.corrupt.inc()
      if (this.logInfo || err !== undefined) logRequest(this.logger, req, res, startMs, { id, err, status, bytes: sent.whole ? bodyBytes : sent.bodyBytes })
    })
  }

  /**
   * Answers one request; `path` is the part of the URL after `/files`
   * (`/<uid>?created_at=…`). Never rejects.
   */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const startMs = performance.now()
    const id = requestId(req)
    // Requests pipelined on one connection are answered one at a time, each
    // once the response before it has gone out: a client that sends many and
    // reads none holds one body in memory, not one per request.
    const connection = this.connectionOf(req.socket)
    const before = connection.last
    let ended!: () => void
    const last: LastResponse = { over: false, closed: new Promise<void>((done) => (ended = done)) }
    this.whenOver(connection, res, () => {
      last.over = true
      ended()
    })
    connection.last = last
    const sent: Sent = { whole: false, bodyBytes: 0 }
    this.sent.set(res, sent)
    // 'finish' comes once the end went to the kernel, and also when it was cut off by the client leaving.
    res.once('finish', () => (sent.whole = !isGone(connection)))
    if (before && !before.over) await before.closed
    // Its client left while it waited: nothing is read for a response that cannot be sent.
    if (isGone(connection)) return this.done(req, res, startMs, id)
    // A signed request is admitted once: answered again below, its nonce would be a replay.
    const admitted = { signed: false }
    try {
      await this.respond(req, res, path, startMs, id, admitted)
    } catch (err) {
      if (errorCode(err) !== 'DES_CONFLICT' || res.headersSent) return this.fail(req, res, err, startMs, id)
      // The file changed between finding and reading it: answered once more,
      // all of it (ETag, conditionals, range) from the version there now.
      try {
        await this.respond(req, res, path, startMs, id, admitted)
      } catch (again) {
        this.fail(req, res, again, startMs, id)
      }
    }
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown, startMs: number, id: string): void {
    if (res.headersSent) {
      // Too late for a status: cut the body short so the client sees the failure.
      res.destroy(err instanceof Error ? err : undefined)
      this.done(req, res, startMs, id, err)
      return
    }
    const bytes = sendError(req, res, err, id)
    this.done(req, res, startMs, id, res.statusCode >= 500 ? err : undefined, bytes)
  }

  private async respond(req: IncomingMessage, res: ServerResponse, path: string, startMs: number, id: string, admitted: { signed: boolean }): Promise<void> {
    const method = req.method
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      throw new DesError('DES_METHOD', `${method} is not allowed on /files`)
    }
    // A signed request is checked once its uid and created_at are known (they are what was signed).
    const signed = this.signedRequests ? signedHeadersOf(req) : undefined
    if (signed === undefined) {
      if (this.auth) {
        const denied = this.auth.check(req, 'read')
        if (denied) throw denied
      } else if (this.requireAuthentication) {
        throw withDetail(new DesError('DES_UNAUTHORIZED', 'authentication required: sign the request (X-DES-* headers)'), 'Authentication required')
      }
    }

    // Statuses as the reference (FastAPI) answers the same request: a path that
    // is no `/files/<uid>` is 404 "Not Found", `/files/<uid>/` a 307 to the
    // path without the slash, a uid that cannot be stored 404 "File not found".
    const q = path.indexOf('?')
    const rawUid = q < 0 ? path.slice(1) : path.slice(1, q)
    const uid = unquote(rawUid)
    if (uid === '') throw new DesError('DES_NOT_FOUND', 'no uid: GET /files/<uid>?created_at=<ISO-8601>')
    const slash = rawUid.indexOf('/')
    if (slash >= 0) {
      if (slash === rawUid.length - 1) return this.redirectWithoutSlash(req, res, startMs, id)
      throw new DesError('DES_NOT_FOUND', 'no such route: a "/" in a uid must be sent as %2F')
    }
    if (uidBytesOverLimit(uid) !== undefined) throw withDetail(new DesError('DES_NOT_FOUND', `bad uid: longer than ${MAX_UID_BYTES} bytes`), FILE_NOT_FOUND)
    let createdAt: string | undefined
    try {
      createdAt = q < 0 ? undefined : queryParam(path.slice(q + 1), 'created_at')
    } catch {
      throw withDetail(new DesError('DES_BAD_ARG', 'created_at: invalid percent-encoding'), BAD_CREATED_AT)
    }
    if (createdAt === undefined) throw withDetail(new DesError('DES_MISSING_PARAM', 'created_at is required (ISO-8601, e.g. 2024-03-01T09:17:12Z)'), MISSING_CREATED_AT)
    if (createdAt === '') throw withDetail(new DesError('DES_BAD_ARG', 'created_at is empty (ISO-8601, e.g. 2024-03-01T09:17:12Z)'), BAD_CREATED_AT)
    if (signed !== undefined) {
      // A signed request is read as the original reads its query (`+` a
      // space): the text its clients sign, and the one the file is found by,
      // so the signature binds what is read.
      createdAt = queryParam(path.slice(q + 1), 'created_at', true)!
      if (!admitted.signed) {
        const denied = await this.signedRequests!.check(signed, uid, createdAt, 'read', id)
        if (denied) throw denied
        admitted.signed = true
      }
    }

    let found: Found
    try {
      const finding = this.store.findNow(uid, createdAt)
      found = finding instanceof Promise ? await finding : finding
    } catch (err) {
      // DES_BAD_ARG from routing is the created_at; the rest (storage, corrupt indexes) keeps its own answer.
      throw withDetail(err, errorCode(err) === 'DES_BAD_ARG' ? BAD_CREATED_AT : errorCode(err) === 'DES_NOT_FOUND' ? FILE_NOT_FOUND : undefined)
    }
    const entry = found.entry
    const size = entry.size
    // A zstd entry may go out as stored (one zstd frame) to a client that accepts
    // zstd and asks for the whole file: no decode here, a third of the bytes on the wire.
    const varies = this.zstdPassthrough && entry.codec === 'zstd'
    const asStored = varies && req.headers.range === undefined && acceptsZstd(req.headers['accept-encoding'])
    // Each representation has its own strong validator.
    const etag = asStored ? `${found.etag.slice(0, -1)}.zstd"` : found.etag
    const inm = req.headers['if-none-match']
    if (inm !== undefined && noneMatch(inm, etag)) {
      res.writeHead(304, [...(varies ? ['ETag', etag, 'Vary', 'Accept-Encoding', 'X-Request-Id', id] : ['ETag', etag, 'X-Request-Id', id]), ...this.cacheHeaders])
      res.end()
      this.done(req, res, startMs, id)
      return
    }
    if (asStored) return this.sendStored(req, res, found, etag, startMs, id)

    let start = 0
    let end = size - 1
    let status = 200
    let contentRange: string | undefined
    const rangeHeader = req.headers.range
    if (rangeHeader !== undefined && size > 0) {
      const ifRange = req.headers['if-range']
      if (ifRange === undefined || ifRange === found.etag) {
        const range = byteRange(size, rangeHeader)
        if (range === -1) throw Object.assign(new DesError('DES_RANGE', `range ${rangeHeader} is not satisfiable for ${size} bytes`), { size })
        if (range !== undefined) {
          start = range.start
          end = range.end
          status = 206
          contentRange = `bytes ${start}-${end}/${size}`
        }
      }
    }
    // One flat header list, written once (cheaper than setHeader per field).
    const headers: string[] = ['ETag', found.etag, 'Content-Type', contentTypeOf(entry.meta), 'Accept-Ranges', 'bytes', 'Content-Length', String(end - start + 1), 'X-Request-Id', id]
    if (contentRange !== undefined) headers.push('Content-Range', contentRange)
    if (varies) headers.push('Vary', 'Accept-Encoding')
    headers.push(...this.cacheHeaders)

    if (method === 'HEAD') {
      // Refused as a GET would refuse it: a BigFile without its object, an entry over the payload ceiling.
      await this.store.checkReadable(found)
      res.writeHead(status, headers)
      res.end()
      this.done(req, res, startMs, id)
      return
    }
    if (!entry.isBigfile) {
      if (!(await this.holdBody(req, res, size))) return this.done(req, res, startMs, id)
      // A hot file is answered without a read or a decode, from a pooled
      // buffer handed back when the response is over.
      const pooled = this.store.payloadCache.enabled ? this.pool.take(size) : undefined
      if (pooled !== undefined) {
        if (this.store.copyCachedPayload(found, pooled)) {
          res.once('close', () => this.pool.give(pooled))
          res.writeHead(status, headers)
          this.sendBody(req, res, pooled.subarray(start, end + 1), startMs, id)
          return
        }
        this.pool.give(pooled)
      }
      const data = await this.store.readPayload(found).catch(goneMeanwhile)
      if (data.length !== size) throw changedMeanwhile(uid)
      // Its client left while the bytes were read: nothing goes out, and it is not counted as answered.
      if (isGone(this.connectionOf(req.socket))) return this.done(req, res, startMs, id)
      res.writeHead(status, headers)
      this.sendBody(req, res, status === 206 ? data.subarray(start, end + 1) : data, startMs, id)
      return
    }
    await this.sendBigfile(req, res, found, headers, status, start, end, startMs, id)
  }

  /**
   * Takes room for a body of `bytes` held in memory until the response is
   * over (at once when there is room, else once there is), and cuts off a
   * client that stops taking it. False when the client has left: the body
   * is not to be read.
   */
  private async holdBody(req: IncomingMessage, res: ServerResponse, bytes: number): Promise<boolean> {
    const connection = this.connectionOf(req.socket)
    if (isGone(connection)) return false
    // Answered again (the file changed meanwhile), a response keeps its share and takes only what the new size adds.
    const held = this.holding.get(res) ?? 0
    if (bytes > held) {
      const more = bytes - held
      const release = this.bodies.tryTake(more) ?? (await this.bodies.take(more))
      this.holding.set(res, bytes)
      this.whenOver(connection, res, release)
    }
    res.setTimeout(this.sendIdleMs)
    // A client that left while this waited for room: its share is back already, and nothing is read.
    return !isGone(connection)
  }

  private connectionOf(socket: Socket): Connection {
    let connection = this.connections.get(socket)
    if (!connection) {
      const c: Connection = { socket, gone: socket.destroyed, onGone: new Set() }
      socket.once('close', () => {
        c.gone = true
        for (const run of c.onGone) run()
        c.onGone.clear()
      })
      this.connections.set(socket, (connection = c))
    }
    return connection
  }

  /** Runs `fn` once: when the response is over, or when its connection is gone (whichever comes first; at once if either has). */
  private whenOver(connection: Connection, res: ServerResponse, fn: () => void): void {
    if (isGone(connection) || res.closed) return fn()
    let ran = false
    const once = () => {
      if (ran) return
      ran = true
      connection.onGone.delete(once)
      fn()
    }
    connection.onGone.add(once)
    res.once('close', once)
  }

  /** `/files/<uid>/`: 307 to `/files/<uid>` with the same query, as the reference (Starlette) answers. */
  private redirectWithoutSlash(req: IncomingMessage, res: ServerResponse, startMs: number, id: string): void {
    const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/'
    const q = url.indexOf('?')
    const location = q < 0 ? url.slice(0, -1) : url.slice(0, q - 1) + url.slice(q)
    res.writeHead(307, ['Location', location, 'Content-Length', '0', 'X-Request-Id', id])
    res.end()
    this.done(req, res, startMs, id)
  }

  private async sendStored(req: IncomingMessage, res: ServerResponse, found: Found, etag: string, startMs: number, id: string): Promise<void> {
    const length = found.entry.storedSize
    const headers = ['ETag', etag, 'Content-Type', contentTypeOf(found.entry.meta), 'Content-Encoding', 'zstd', 'Vary', 'Accept-Encoding', 'Content-Length', String(length), 'X-Request-Id', id, ...this.cacheHeaders]
    if (req.method === 'HEAD') {
      res.writeHead(200, headers)
      res.end()
      this.done(req, res, startMs, id)
      return
    }
    if (!(await this.holdBody(req, res, length))) return this.done(req, res, startMs, id)
    const data = await this.store.readStored(found).catch(goneMeanwhile)
    if (data.length !== length) throw changedMeanwhile(found.uid)
    if (isGone(this.connectionOf(req.socket))) return this.done(req, res, startMs, id)
    res.writeHead(200, headers)
    this.sendBody(req, res, data, startMs, id)
  }

  private async sendBigfile(req: IncomingMessage, res: ServerResponse, found: Found, headers: string[], status: number, start: number, end: number, startMs: number, id: string): Promise<void> {
    // A wrong object size fails here, before the status line: a 502.
    const { body } = await this.store.streamBigfile(found, status === 206 ? { start, end } : undefined)
    // Streamed as the client takes it; one that stops taking is cut off.
    res.setTimeout(this.sendIdleMs)
    res.writeHead(status, headers)
    this.sendBody(req, res, body, startMs, id, end - start + 1)
  }

  /**
   * Sends a response's body (after its status line), then counts and logs it
   * (`done`). A body in memory goes out in one write; a stream a slice at a
   * time, each once the one before went to the kernel, the slices that did
   * counted in the response's `Sent`. A stream that fails (a BigFile failing
   * its sha256 at the end, its last chunk held back; storage gone mid-way)
   * cuts the response short of its Content-Length.
   */
  private sendBody(req: IncomingMessage, res: ServerResponse, body: Buffer | Readable, startMs: number, id: string, bodyBytes = (body as Buffer).length): void {
    if (Buffer.isBuffer(body)) {
      res.end(body)
      return this.done(req, res, startMs, id, undefined, bodyBytes)
    }
    const connection = this.connectionOf(req.socket)
    const sent = this.sent.get(res)!
    const slices = slicesOf(body)
    const pump = async (): Promise<void> => {
      // One slice ahead: the last one goes with the end, which `whole` counts.
      let slice = await slices.next()
      while (!slice.done) {
        const next = await slices.next()
        if (isGone(connection) || res.destroyed) {
          await slices.return(undefined) // lets the body's stream go
          return
        }
        if (next.done) {
          res.end(slice.value)
          return
        }
        const length = slice.value.length
        const wentOut = res.write(slice.value, (err) => {
          // A write the client's leaving cut off completes without an error, on a destroyed socket.
          if (!err && !isGone(connection)) sent.bodyBytes += length
        })
        if (!wentOut) await drained(res)
        slice = next
      }
      res.end()
    }
    pump().then(
      () => this.done(req, res, startMs, id, undefined, bodyBytes),
      (err: unknown) => {
        if (!res.destroyed) res.destroy(err instanceof Error ? err : undefined)
        this.done(req, res, startMs, id, err)
      },
    )
  }
}
