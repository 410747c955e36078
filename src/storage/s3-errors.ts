// What an S3 failure was, decided once for every caller: the store's reads,
// the packer's uploads, pack and migrate sources. Each caller words its error
// and picks its code from the kind (a missing object is "not found" to a
// reader, an unchanged answer to a HEAD before a BigFile upload).

import { DesError } from '../errors'

/** Network failures as Node and the SDK report them (error `code` or `name`). */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
  'TimeoutError',
  'RequestTimeout',
  'AbortError',
  'NetworkingError',
])

/**
 * - `no-credentials`: the SDK found no credentials to sign with (none set, no
 *   profile, no role, or its credentials endpoint down): nothing was sent
 * - `no-bucket`: the bucket does not exist (NoSuchBucket)
 * - `missing`: no such object (404, NoSuchKey, NotFound)
 * - `conflict`: a condition failed, the object changed (412, 409, PreconditionFailed, ConditionalRequestConflict)
 * - `forbidden`: 403
 * - `local-io`: a file of ours on the way (temp space), not S3's answer
 * - `unreachable`: no answer (refused, reset, timed out)
 * - `busy`: S3 asks to come back later (503 SlowDown, 429, 408)
 * - `server`: another 5xx
 * - `refused`: any other answer (a 4xx)
 */
export type S3ErrorKind = 'no-credentials' | 'no-bucket' | 'missing' | 'conflict' | 'forbidden' | 'local-io' | 'unreachable' | 'busy' | 'server' | 'refused'

interface SdkError {
  name?: string
  code?: string
  syscall?: string
  message?: string
  $metadata?: { httpStatusCode?: number; attempts?: number }
}

/** The HTTP status S3 answered with; undefined when it did not answer. */
export function s3Status(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode
}

/** What kind of failure an SDK error is (see S3ErrorKind). */
export function s3ErrorKind(err: unknown): S3ErrorKind {
  const e = (err ?? {}) as SdkError
  const status = s3Status(err)
  const name = e.name ?? ''
  const code = e.code ?? ''
  if (name === 'CredentialsProviderError') return 'no-credentials'
  if (name === 'NoSuchBucket') return 'no-bucket'
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound') return 'missing'
  if (status === 412 || status === 409 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict') return 'conflict'
  if (status === 403) return 'forbidden'
  if (UNREACHABLE.has(name) || UNREACHABLE.has(code)) return 'unreachable'
  if (status === undefined) return e.$metadata === undefined && e.syscall ? 'local-io' : 'unreachable'
  if (status === 503 || status === 429 || status === 408) return 'busy'
  if (status >= 500) return 'server'
  return 'refused'
}

/** Worth another attempt later: no answer, busy, a 5xx. */
export function isTransientKind(kind: S3ErrorKind): boolean {
  return kind === 'unreachable' || kind === 'local-io' || kind === 'busy' || kind === 'server' || kind === 'no-credentials'
}

/**
 * What a `no-credentials` failure says, whoever meets it. Unavailable, not a
 * bad setting: the SDK says the same when none are set and when the
 * endpoint that hands a pod its role's credentials is down a moment.
 */
export function noCredentials(err: unknown): DesError {
  return new DesError('DES_UNAVAILABLE', `no AWS credentials could be loaded to sign S3 requests (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or the pod's role and its credentials endpoint): ${s3ErrorText(err)}`, { cause: err })
}

/** The error's own words: `code: name: message`, each once. */
export function s3ErrorText(err: unknown): string {
  const e = (err ?? {}) as SdkError
  return [e.code, e.name, e.message].filter((s, i, all) => Boolean(s) && all.indexOf(s) === i).join(': ')
}
