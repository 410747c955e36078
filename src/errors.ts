// The one map from error codes to HTTP statuses and CLI exit codes.

/** An error with a stable code (`DES_CORRUPT`, `DES_NOT_FOUND`, ...). */
export class DesError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DesError'
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
  DES_RANGE: { status: 416, exitCode: 2 },
  DES_METHOD: { status: 405, exitCode: 2 },
  DES_DUPLICATE: { status: 409, exitCode: 5, answer: 'already stored' },
  DES_CONFLICT: { status: 409, exitCode: 5, answer: 'the file changed while it was being read; retry' },
  DES_CHANGED: { status: 409, exitCode: 5, answer: 'the file changed while it was being read; retry' },
  DES_CONFIG: { status: 500, exitCode: 2, answer: 'server configuration error' },
  DES_CORRUPT: { status: 502, exitCode: 4, answer: 'stored data failed its integrity check' },
  DES_STORAGE: { status: 502, exitCode: 6, answer: 'storage error' },
  DES_UNAVAILABLE: { status: 503, exitCode: 6, answer: 'storage unreachable' },
  DES_IO: { status: 500, exitCode: 1, answer: 'i/o error' },
}

const UNKNOWN: Outcome = { status: 500, exitCode: 1, answer: 'internal error' }

/** The code of any thrown value (`DES_INTERNAL` when it has none of ours). */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && code.startsWith('DES_') ? code : 'DES_INTERNAL'
}

/** HTTP status for an error. */
export function httpStatus(err: unknown): number {
  return (OUTCOMES[errorCode(err)] ?? UNKNOWN).status
}

/** Process exit code for an error. */
export function exitCode(err: unknown): number {
  return (OUTCOMES[errorCode(err)] ?? UNKNOWN).exitCode
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
  if (err instanceof Error) return err.message
  return String(err)
}
