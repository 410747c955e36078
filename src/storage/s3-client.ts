// Builds S3 clients from typed settings (credentials from the standard AWS chain).

import { S3Client } from '@aws-sdk/client-s3'
import { ConfiguredRetryStrategy } from '@smithy/core/retry'
import { s3TimeoutsFromEnv, type S3Settings } from '../config/env'

export interface S3ClientOptions {
  /** Attempts per request, the SDK's standard retry strategy (default 3). */
  maxAttempts?: number
  /**
   * First backoff before a retry, doubling each retry, with jitter (at most
   * 20 s); unset: the SDK's own backoff. The one retry policy of every S3
   * request (`packer.s3_source.retry_delay_seconds` for migration sources).
   */
  retryDelayMs?: number
  /** Give up connecting after this many ms (default DES_S3_CONNECT_TIMEOUT_MS, 2 s). */
  connectionTimeoutMs?: number
  /** Fail a request whose connection carries nothing for this many ms (default DES_S3_REQUEST_TIMEOUT_MS, 30 s). */
  requestTimeoutMs?: number
  /**
   * The bodies of its GETs are read at a client's pace (des serve streaming
   * to a slow client): the connection may rest while the client catches up.
   * The timeout then runs until a response's headers (the SDK's
   * requestTimeout) and, for the body, while its reader waits on S3
   * (S3Source). Otherwise it is the connection's idle time: an upload that
   * moves is never cut, however long it takes.
   */
  pacedByReaders?: boolean
}

/**
 * An S3 client for one bucket's settings. Every client has both timeouts:
 * without them the SDK waits for ever on an endpoint that accepts and never
 * answers, and `des pack` / `des migrate` hung instead of failing as
 * unavailable (exit 6) after their retries. The request timeout is never a
 * limit on a request's length (see `pacedByReaders`): the SDK's
 * requestTimeout is one from the start of the request to its answer, which
 * cut a 16 MiB part uploaded at under 0.6 MB/s.
 */
export function createS3Client(s3: Pick<S3Settings, 'region' | 'endpoint' | 'forcePathStyle'>, opts: S3ClientOptions = {}): S3Client {
  const fromEnv = opts.connectionTimeoutMs === undefined || opts.requestTimeoutMs === undefined ? s3TimeoutsFromEnv() : undefined
  const requestTimeoutMs = opts.requestTimeoutMs ?? fromEnv!.s3RequestTimeoutMs
  const client = new S3Client({
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    maxAttempts: opts.maxAttempts ?? 3,
    ...(opts.retryDelayMs !== undefined ? { retryStrategy: retryStrategy(opts.maxAttempts ?? 3, opts.retryDelayMs) } : {}),
    requestHandler: {
      connectionTimeout: opts.connectionTimeoutMs ?? fromEnv!.s3ConnectTimeoutMs,
      ...(opts.pacedByReaders ? { requestTimeout: requestTimeoutMs, throwOnRequestTimeout: true } : { socketTimeout: requestTimeoutMs }),
    },
  })
  bodyIdleMs.set(client, requestTimeoutMs)
  return client
}

/**
 * The SDK's requestTimeout ends once a response's headers are in: a body
 * that stops mid-way is watched by its reader (S3Source) for this long, the
 * client's own request timeout (DES_S3_REQUEST_TIMEOUT_MS for a client made
 * elsewhere).
 */
const bodyIdleMs = new WeakMap<S3Client, number>()

export function bodyIdleMsOf(client: S3Client): number {
  return bodyIdleMs.get(client) ?? s3TimeoutsFromEnv().s3RequestTimeoutMs
}

/** The SDK's standard strategy (which errors, how many tries, the retry quota) with our backoff. */
export function retryStrategy(maxAttempts: number, firstDelayMs: number): ConfiguredRetryStrategy {
  return new ConfiguredRetryStrategy(maxAttempts, (attempt) => Math.min(20_000, firstDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random())))
}
