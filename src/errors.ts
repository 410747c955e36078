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
}

const OUTCOMES: Record<string, Outcome> = {
  DES_BAD_ARG: { status: 400, exitCode: 2 },
  DES_CONFIG: { status: 500, exitCode: 2 },
  DES_UNAUTHORIZED: { status: 401, exitCode: 2 },
  DES_FORBIDDEN: { status: 403, exitCode: 2 },
  DES_NOT_FOUND: { status: 404, exitCode: 3 },
  DES_NO_FILE: { status: 404, exitCode: 3 },
  DES_RANGE: { status: 416, exitCode: 2 },
  DES_METHOD: { status: 405, exitCode: 2 },
  DES_DUPLICATE: { status: 409, exitCode: 5 },
  DES_CONFLICT: { status: 409, exitCode: 5 },
  DES_CHANGED: { status: 409, exitCode: 5 },
  DES_CORRUPT: { status: 502, exitCode: 4 },
  DES_STORAGE: { status: 502, exitCode: 6 },
  DES_UNAVAILABLE: { status: 503, exitCode: 6 },
  DES_IO: { status: 500, exitCode: 1 },
}

const UNKNOWN: Outcome = { status: 500, exitCode: 1 }

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

/** One line for a user: the message without our code prefix. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
