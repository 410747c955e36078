// The one map from error codes to HTTP statuses and CLI exit codes.
//
// Exit codes of every `des` command (docs/CLI.md has the table per command):
//   0 success · 1 internal error (a bug) · 2 bad argument or configuration ·
//   3 not found (a file, directory, shard or uid) · 4 corrupt data ·
//   5 conflict · 6 storage or database unavailable.

/** An error with a stable code (`DES_CORRUPT`, `DES_NOT_FOUND`, ...). */
export class DesError extends Error {
  /** The stable code (`DES_CORRUPT`, `DES_NOT_FOUND`, `DES_BAD_ARG`, ...): what `httpStatus` and `exitCode` go by. */
  readonly code: string
  /** The uid the error is about, when it is about one file (as data: never parsed out of the message). */
  readonly uid?: string
  /** An error with `code` and a message that says what and where; `options.cause` keeps the underlying error. */
  constructor(code: string, message: string, options?: { cause?: unknown; uid?: string }) {
    super(message, options)
    this.name = 'DesError'
    if (options?.uid !== undefined) this.uid = options.uid
    this.code = code
  }
}

interface Outcome {
  status: number
  exitCode: number
  /**
   * What an HTTP error body says for this code: a fixed text for failures on
   * our side (their messages name paths and echo stored bytes; those go to the
   * log only). Codes without one are caused by the request, and their own
   * message, built from it, is what the client needs to fix it.
   */
  answer?: string
}

const OUTCOMES: Record<string, Outcome> = {
  DES_BAD_ARG: { status: 400, exitCode: 2 },
  // A required request parameter left out (FastAPI, and so the reference, answers 422).
  DES_MISSING_PARAM: { status: 422, exitCode: 2 },
  DES_UNAUTHORIZED: { status: 401, exitCode: 2 },
  DES_FORBIDDEN: { status: 403, exitCode: 2 },
  DES_NOT_FOUND: { status: 404, exitCode: 3 },
  DES_NO_FILE: { status: 404, exitCode: 3 },
  // A file the original DES marked deleted (a tombstone in its shard's .meta sidecar): its 410.
  DES_DELETED: { status: 410, exitCode: 3 },
  DES_RANGE: { status: 416, exitCode: 2 },
  DES_METHOD: { status: 405, exitCode: 2 },
  // A signed request over its key's max_requests_per_hour (the reference answers 429).
  DES_RATE_LIMITED: { status: 429, exitCode: 6 },
  DES_DUPLICATE: { status: 409, exitCode: 5, answer: 'already stored' },
  DES_CONFLICT: { status: 409, exitCode: 5, answer: 'the file changed while it was being read; retry' },
  DES_CHANGED: { status: 409, exitCode: 5, answer: 'the file changed while it was being read; retry' },
  // A source file of a pack or migration that changed between its check and its read.
  DES_SOURCE_CHANGED: { status: 409, exitCode: 5 },
  DES_CONFIG: { status: 500, exitCode: 2, answer: 'server configuration error' },
  DES_CORRUPT: { status: 502, exitCode: 4, answer: 'stored data failed its integrity check' },
  DES_STORAGE: { status: 502, exitCode: 6, answer: 'storage error' },
  DES_UNAVAILABLE: { status: 503, exitCode: 6, answer: 'storage unreachable' },
  DES_IO: { status: 502, exitCode: 6, answer: 'storage error' },
}

const UNKNOWN: Outcome = { status: 500, exitCode: 1, answer: 'internal error' }

/** The exit codes of the `des` commands, by meaning. */
export const EXIT_CODES = {
  ok: 0,
  internal: 1,
  badArgument: 2,
  notFound: 3,
  corrupt: 4,
  conflict: 5,
  unavailable: 6,
} as const

// Network failures as Node reports them (errno codes on the error or, for a
// host with several addresses, on each error of an AggregateError).
const UNREACHABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE'])

const PG_CONNECTION_LOST = /^(ROLLBACK - )?(timeout expired|Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable)$/

/**
 * A code of ours for an error of a driver or of the network that carries none:
 * the database or the network unreachable (PostgreSQL SQLSTATE class 08
 * connection exception, 53 insufficient resources, 57P0x shutting down; a
 * knex pool timeout) is `DES_UNAVAILABLE`; a login, database, table or column
 * that does not exist (28xxx, 3D000, 42P01, 42703), or a column of another type
 * than the table must have (a `created_at` of text: 42883, no such operator)
 * is `DES_CONFIG`.
 */
function foreignCode(err: unknown, depth = 0): string | undefined {
  const e = err as { code?: unknown; name?: unknown; errors?: unknown } | null | undefined
  if (typeof e?.code === 'string') {
    if (UNREACHABLE_ERRNO.has(e.code)) return 'DES_UNAVAILABLE'
    if (/^[0-9A-Z]{5}$/.test(e.code)) {
      if (/^(08|53|57P0)/.test(e.code)) return 'DES_UNAVAILABLE'
      if (/^(28|3D)/.test(e.code) || ['42P01', '42703', '42883'].includes(e.code)) return 'DES_CONFIG'
    }
  }
  if (e?.name === 'KnexTimeoutError') return 'DES_UNAVAILABLE'
  // The connection errors node-postgres raises without a code (a connect
  // timeout; a connection lost, which a transaction's ROLLBACK then reports).
  if (err instanceof Error && PG_CONNECTION_LOST.test(err.message)) return 'DES_UNAVAILABLE'
  if (depth < 2 && Array.isArray(e?.errors) && e.errors.length > 0) return foreignCode(e.errors[0], depth + 1)
  return undefined
}

/** The code of any thrown value (`DES_INTERNAL` when it has none of ours). */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && code.startsWith('DES_') ? code : 'DES_INTERNAL'
}

/**
 * `errorCode`, and for an error that has no code of ours, the code its kind
 * deserves (an unreachable database or network: `DES_UNAVAILABLE`); else
 * `DES_INTERNAL`. What the CLI's exit code and a migration report go by.
 */
export function classifyError(err: unknown): string {
  const code = errorCode(err)
  return code !== 'DES_INTERNAL' ? code : (foreignCode(err) ?? code)
}

/** HTTP status for an error. */
export function httpStatus(err: unknown): number {
  return (OUTCOMES[errorCode(err)] ?? UNKNOWN).status
}

/** Process exit code for an error (see the table at the top of this file). */
export function exitCode(err: unknown): number {
  return (OUTCOMES[classifyError(err)] ?? UNKNOWN).exitCode
}

/**
 * The `error` text of an HTTP error body answered with `status`: the fixed
 * text of the code, else (a request's own mistake, status < 500) the message.
 */
export function httpMessage(err: unknown, status = httpStatus(err)): string {
  const answer = (OUTCOMES[errorCode(err)] ?? UNKNOWN).answer
  if (answer !== undefined) return answer
  if (status >= 500) return status === 503 ? 'service unavailable' : 'internal error'
  return err instanceof Error ? err.message : String(err)
}

/** One line for a user: the message without our code prefix. */
export function describe(err: unknown): string {
  if (err instanceof Error) {
    // A connection to a host with several addresses fails with an AggregateError and no message of its own.
    if (err.message === '' && err instanceof AggregateError && err.errors.length > 0) return err.errors.map(describe).join('; ')
    return err.message
  }
  return String(err)
}
