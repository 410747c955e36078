// The original DES's signed requests, checked as it checks them: four
// headers, X-DES-Public-Key (base64 of an OpenSSH public key line),
// X-DES-Signature (base64), X-DES-Timestamp (ISO-8601), X-DES-Nonce, over
// the UTF-8 text `<uid>|<created_at>|<timestamp>|<nonce>`. The checks run in
// the original's order and give its answers (401 "Invalid signature" for
// every reason, so a client learns nothing about which; 429 "Rate limit
// exceeded"; 403 "Permission denied"); the reason goes to the log with the
// key's fingerprint, never the key or the signature.

import { createHash, constants, verify } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { parseSshPublicKey, strictBase64, type SshPublicKey } from '../auth/ssh-public-key'
import type { AuthorizedKey } from '../config/authorized-keys'
import { DesError } from '../errors'
import { authRequestsTotal } from '../metrics'
import { readReferenceTimestamp } from '../store/timestamp'
import { silentLogger, type Logger } from './log'
import type { Admitter } from './replay-guard'

/** Timestamps further than this from the server's clock are refused (the original's _MAX_CLOCK_SKEW). */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000

/** The four headers as sent ('' or undefined when absent). */
export interface SignedHeaders {
  publicKey?: string
  signature?: string
  timestamp?: string
  nonce?: string
}

/**
 * A request's X-DES-* headers, or undefined when it carries none (an empty
 * header counts as none, as in the original). A header sent twice counts by
 * its first value, as the original reads it; otherwise `req.headers` decides
 * (what a middleware of the app set or removed there counts).
 */
export function signedHeadersOf(req: IncomingMessage): SignedHeaders | undefined {
  const one = (name: string) => {
    const sent = req.headersDistinct?.[name]
    if (sent && sent.length > 1) return sent[0]
    const v = req.headers[name]
    return Array.isArray(v) ? v[0] : v
  }
  const headers = { publicKey: one('x-des-public-key'), signature: one('x-des-signature'), timestamp: one('x-des-timestamp'), nonce: one('x-des-nonce') }
  return headers.publicKey || headers.signature || headers.timestamp || headers.nonce ? headers : undefined
}

/**
 * X-DES-Timestamp as the original reads it (Python's `fromisoformat` after a
 * final `Z` became `+00:00`; no offset is UTC), in milliseconds to the whole
 * second (its fraction dropped: nothing for a 5-minute window); undefined
 * when Python would refuse it.
 */
export function instantOf(text: string): number | undefined {
  const read = readReferenceTimestamp(text)
  if (read === null) return undefined
  const ms = Date.parse(read.canonical)
  return Number.isNaN(ms) ? undefined : ms
}

const INVALID_SIGNATURE = 'Invalid signature'

function invalid(): DesError {
  return Object.assign(new DesError('DES_UNAUTHORIZED', 'invalid signature'), { detail: INVALID_SIGNATURE })
}

function rateLimited(): DesError {
  return Object.assign(new DesError('DES_RATE_LIMITED', 'rate limit exceeded'), { detail: 'Rate limit exceeded' })
}

/** The signature check of one key type, as the original's `cryptography` calls make it. */
function signatureVerifies(key: SshPublicKey, data: Buffer, signature: Buffer): boolean {
  try {
    if (key.type === 'ssh-ed25519') return verify(null, data, key.key, signature)
    if (key.type === 'ssh-rsa') return verify('sha256', data, { key: key.key, padding: constants.RSA_PKCS1_PADDING }, signature)
    return verify('sha256', data, { key: key.key, dsaEncoding: 'der' }, signature)
  } catch {
    return false // a signature that is not even DER
  }
}

/** A fixed-size digest of a nonce: what the replay state keeps, whatever length the client sent. */
function nonceDigest(nonce: string): string {
  return createHash('sha256').update(nonce, 'utf8').digest().subarray(0, 16).toString('base64')
}

export interface SignedRequestsOptions {
  /** The authorized keys by canonical key (config/authorized-keys.ts). */
  keys: Map<string, AuthorizedKey>
  /** Nonces and rate windows: this process's, or the cluster primary's. */
  admitter: Admitter
  /** Milliseconds since the epoch (default Date.now); tests inject their own. */
  clock?: () => number
  logger?: Logger
}

export class SignedRequests {
  private readonly keys: Map<string, AuthorizedKey>
  private readonly admitter: Admitter
  private readonly clock: () => number
  private readonly logger: Logger

  constructor(opts: SignedRequestsOptions) {
    this.keys = opts.keys
    this.admitter = opts.admitter
    this.clock = opts.clock ?? Date.now
    this.logger = opts.logger ?? silentLogger
  }

  get keyCount(): number {
    return this.keys.size
  }

  /** Refuses with a reason for the log; the client sees only "Invalid signature". */
  private refuse(result: 'invalid_sig' | 'expired', reason: string, requestId: string | undefined, fingerprint?: string): DesError {
    authRequestsTotal.labels(result).inc()
    this.logger.warn({ request_id: requestId, fingerprint, reason }, `signed request refused: ${reason}`)
    return invalid()
  }

  /**
   * null when the signed request may read `uid`; else the error to answer.
   * `uid` and `createdAt` are the values the request is routed by (decoded
   * from its path and query). Rejects only when the replay check cannot be
   * made (a worker whose primary does not answer): the request fails.
   */
  async check(headers: SignedHeaders, uid: string, createdAt: string, action: string, requestId?: string): Promise<DesError | null> {
    const { publicKey, signature, timestamp, nonce } = headers
    if (!publicKey || !signature || !timestamp || !nonce) {
      return Object.assign(new DesError('DES_UNAUTHORIZED', 'missing authentication headers: X-DES-Public-Key, X-DES-Signature, X-DES-Timestamp and X-DES-Nonce are all needed'), {
        detail: 'Missing authentication headers',
      })
    }
    const nowMs = this.clock()
    const keyBytes = strictBase64(publicKey)
    const signatureBytes = strictBase64(signature)
    if (!keyBytes || !signatureBytes) return this.refuse('invalid_sig', 'a header is not valid base64', requestId)
    let presented: SshPublicKey
    try {
      presented = parseSshPublicKey(keyBytes.toString('latin1'))
    } catch (err) {
      return this.refuse('invalid_sig', `the public key cannot be read: ${(err as Error).message}`, requestId)
    }
    const fingerprint = presented.fingerprint
    const authorized = this.keys.get(presented.canonical)
    if (!authorized) return this.refuse('invalid_sig', 'the key is not authorized', requestId, fingerprint)
    if (authorized.expiresAtMs !== undefined && nowMs > authorized.expiresAtMs) return this.refuse('expired', 'the key has expired', requestId, fingerprint)
    const signedAtMs = instantOf(timestamp)
    if (signedAtMs === undefined) return this.refuse('invalid_sig', 'X-DES-Timestamp is not an ISO-8601 timestamp', requestId, fingerprint)
    if (Math.abs(nowMs - signedAtMs) > MAX_CLOCK_SKEW_MS) return this.refuse('invalid_sig', 'X-DES-Timestamp is more than 5 minutes from the server clock', requestId, fingerprint)

    // Verified before the replay check (so a forged request uses up neither a
    // nonce nor the key's hour), answered in the original's order after it.
    const verified = signatureVerifies(authorized.key, Buffer.from(`${uid}|${createdAt}|${timestamp}|${nonce}`, 'utf8'), signatureBytes)
    const admission = await this.admitter.admit({ nonce: nonceDigest(nonce), fingerprint, limit: authorized.maxRequestsPerHour, nowMs, commit: verified })
    if (admission.replayed) return this.refuse('invalid_sig', 'the nonce was used in the last 10 minutes', requestId, fingerprint)
    if (admission.full || admission.rateLimited) {
      authRequestsTotal.labels('rate_limited').inc()
      const reason = admission.full ? 'too many nonces are held (DES_AUTH_MAX_NONCES): refused rather than forgetting one' : 'the key used up max_requests_per_hour'
      this.logger.warn({ request_id: requestId, fingerprint, reason }, `signed request refused: ${reason}`)
      return rateLimited()
    }
    if (!verified) return this.refuse('invalid_sig', 'the signature does not verify', requestId, fingerprint)
    authRequestsTotal.labels('success').inc()
    this.logger.debug({ request_id: requestId, fingerprint }, 'signed request verified')
    if (!permits(authorized, action, uid)) {
      return Object.assign(new DesError('DES_FORBIDDEN', `this key may not ${action} this uid`), { detail: 'Permission denied' })
    }
    return null
  }
}

/** The original's check_permission: the action listed, the uid under an allowed prefix (if any) and under no excluded one. */
export function permits(key: AuthorizedKey, action: string, uid: string): boolean {
  if (!key.permissions.includes(action)) return false
  if (key.allowedPrefixes?.length && !key.allowedPrefixes.some((p) => uid.startsWith(p))) return false
  if (key.excludedPrefixes?.length && key.excludedPrefixes.some((p) => uid.startsWith(p))) return false
  return true
}
