// Builds S3 clients from typed settings (credentials from the standard AWS chain).

import { S3Client } from '@aws-sdk/client-s3'
import type { S3Settings } from '../config/env'

export interface S3ClientOptions {
  /** Attempts per request, the SDK's standard retry strategy (default 3). */
  maxAttempts?: number
}

/** An S3 client for one bucket's settings. */
export function createS3Client(s3: Pick<S3Settings, 'region' | 'endpoint' | 'forcePathStyle'>, opts: S3ClientOptions = {}): S3Client {
  return new S3Client({
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    maxAttempts: opts.maxAttempts ?? 3,
  })
}
